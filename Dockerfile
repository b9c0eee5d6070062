# The worker/dashboard image. By default the official TensorFlow GPU image (CUDA and cuDNN
# included, TensorFlow installed) plus sweeper; docker-compose.cpu.yml builds it instead on a
# plain Debian/Python base with the `cpu` extra (tensorflow-cpu).
# checkov:skip=CKV_DOCKER_7: the base's tag is the ARG's default just above (2.21.0-gpu), which checkov cannot read
# checkov:skip=CKV_DOCKER_2: one image serves the workers and the dashboard, so each service's health check is in compose or Kubernetes
ARG BASE_IMAGE=tensorflow/tensorflow:2.21.0-gpu
FROM ${BASE_IMAGE}
# The package extras to install: none on the TensorFlow image, "cpu" on a plain Python image.
ARG EXTRAS=""

LABEL org.opencontainers.image.title="sweeper" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.description="Optuna sweep workers for the tutorial CNN on CIFAR-10"

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    TF_FORCE_GPU_ALLOW_GROWTH=true \
    KERAS_HOME=/cache/keras \
    SWEEPER_CACHE_DIR=/cache/sweeper \
    SWEEPER_GPU_LOCK_DIR=/locks

# /cache, /locks and /models (the kept models) are made below, owned by the user the containers
# run as, so a new named volume mounted on them is writable. They stay empty: replicas started
# together on a new named volume would otherwise race to copy subdirectories into it ("file
# exists"); sweeper and Keras create what they need.
WORKDIR /app
# Dependencies first, from pyproject.toml alone, in a layer of their own: editing sweeper's code
# rebuilds only the small layer below, not TensorFlow's. The stand-in package holds only the version
# that pyproject.toml reads from it.
COPY pyproject.toml README.md ./
# Hadolint's DL3013 (pin pip's versions) is skipped: pyproject.toml's ranges pin them, as for any install.
# hadolint ignore=DL3013
RUN mkdir sweeper && echo "__version__ = \"0\"" > sweeper/__init__.py \
    && python3 -m pip install ".${EXTRAS:+[$EXTRAS]}" \
    && rm -rf sweeper build sweeper.egg-info
COPY sweeper ./sweeper
COPY studies ./studies
RUN python3 -m pip install --no-deps . \
    && rm -rf build sweeper.egg-info \
    && useradd --create-home --uid 1000 sweeper \
    && mkdir -p /cache /locks /models \
    && chown sweeper:sweeper /cache /locks /models

USER 1000
ENTRYPOINT ["sweeper"]
CMD ["--help"]
