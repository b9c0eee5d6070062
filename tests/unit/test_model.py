"""The model is the tutorial's CNN in each of the four dropout/batch-normalization combinations."""

import keras
import pytest

from sweeper.training.model import build_model, compile_for_training, network, plain_twin


def _conv_params(c_in: int, c_out: int) -> int:
    return 3 * 3 * c_in * c_out + c_out


CONV_PARAMS = sum(_conv_params(a, b) for a, b in [(3, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128)])
DENSE_PARAMS = (4 * 4 * 128) * 256 + 256 + 256 * 10 + 10
BN_PARAMS = 4 * (2 * 32 + 2 * 64 + 2 * 128 + 256)  # gamma, beta, moving mean and variance


def _expected_layers(dropout: float, batchnorm: bool) -> list[str]:
    def unit(kind: str) -> list[str]:
        return [kind, "BatchNormalization", "Activation"] if batchnorm else [kind]

    layers: list[str] = []
    for _ in range(3):
        layers += unit("Conv2D") + unit("Conv2D") + ["MaxPooling2D"] + (["Dropout"] if dropout else [])
    return layers + ["Flatten"] + unit("Dense") + ["Dense"]


@pytest.mark.parametrize("dropout, batchnorm", [(0.0, False), (0.2, False), (0.0, True), (0.35, True)])
def test_tutorial_architecture(dropout: float, batchnorm: bool) -> None:
    model = build_model(dropout, batchnorm, 1e-4)
    assert [type(layer).__name__ for layer in model.layers] == _expected_layers(dropout, batchnorm)
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == [dropout] * (
        3 if dropout else 0
    )
    assert model.count_params() == CONV_PARAMS + DENSE_PARAMS + (BN_PARAMS if batchnorm else 0)

    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [32, 32, 64, 64, 128, 128]
    assert all(c.padding == "same" and c.kernel_size == (3, 3) for c in convs)
    expected_activation = "linear" if batchnorm else "relu"
    assert all(c.activation.__name__ == expected_activation for c in convs)
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert all(p.pool_size == (2, 2) and p.strides == (2, 2) and p.padding == "same" for p in pools)
    assert model.layers[-1].units == 10 and model.layers[-1].activation.__name__ == "softmax"
    assert model.optimizer.learning_rate.numpy() == pytest.approx(1e-4)
    assert model.loss == "sparse_categorical_crossentropy"


def test_a_variable_rate_network_is_saved_as_the_plain_tutorial_cnn_with_its_weights(tmp_path) -> None:
    params = {"dropout": 0.3, "batchnorm": True, "learning_rate": 1e-3}
    trained = compile_for_training(network(0.3, True, variable_rates=True), 1e-3)
    trained.optimizer.build(trained.trainable_variables)
    for variable in trained.optimizer.variables:  # a state of its own, as training leaves
        variable.assign(keras.ops.full(variable.shape, 0.5, dtype=variable.dtype))
    assert [type(layer).__name__ for layer in trained.layers].count("RateDropout") == 3

    path = tmp_path / "model.keras"
    plain_twin(trained, params).save(path)
    loaded = keras.saving.load_model(path)  # plain Keras: no custom object needed

    assert [type(layer).__name__ for layer in loaded.layers] == _expected_layers(0.3, True)
    assert [layer.rate for layer in loaded.layers if isinstance(layer, keras.layers.Dropout)] == [0.3] * 3
    kept = [w for layer in trained.layers if type(layer).__name__ != "RateDropout" for w in layer.get_weights()]
    assert all((a == b).all() for a, b in zip(kept, loaded.get_weights(), strict=True))
    saved_state = [keras.ops.convert_to_numpy(v) for v in loaded.optimizer.variables]
    trained_state = [keras.ops.convert_to_numpy(v) for v in trained.optimizer.variables]
    assert len(saved_state) == len(trained_state) > 2  # the moments too, as model.save keeps them
    assert all((a == b).all() for a, b in zip(saved_state, trained_state, strict=True))
