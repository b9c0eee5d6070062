# Stands in for python:3.11-slim-bookworm, which cannot be pulled here: Debian's Python 3.11 on a
# bookworm root made by debootstrap. Test-only: PIP_CERT names this machine's CA bundle so pip
# reaches PyPI from inside builds; images published for users never carry it.
ARG ROOT_IMAGE
FROM ${ROOT_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-pip python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s /usr/bin/python3 /usr/local/bin/python
COPY pip-ca.crt /usr/local/share/sweeper-test/pip-ca.crt
ENV PIP_CERT=/usr/local/share/sweeper-test/pip-ca.crt \
    PIP_BREAK_SYSTEM_PACKAGES=1
