# The worker/dashboard image: the official TensorFlow image (CUDA and cuDNN included) plus sweeper.
# TensorFlow comes from the base image, so the package is installed without its tensorflow extra.
# BASE_IMAGE is overridden with the CPU image by docker-compose.cpu.yml.
ARG BASE_IMAGE=tensorflow/tensorflow:2.21.0-gpu
FROM ${BASE_IMAGE}

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

WORKDIR /app
COPY pyproject.toml README.md ./
COPY sweeper ./sweeper
COPY studies ./studies
RUN python3 -m pip install . \
    && useradd --create-home --uid 1000 sweeper \
    && mkdir -p /cache/keras /cache/sweeper /locks \
    && chown -R sweeper:sweeper /cache /locks

USER sweeper
ENTRYPOINT ["sweeper"]
CMD ["--help"]
