# Stands in for postgres:16, which cannot be pulled here: Debian's PostgreSQL with an entrypoint
# that honours the official image's POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB and PGDATA, and
# initializes in UTF-8 as that image does.
ARG ROOT_IMAGE
FROM ${ROOT_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/run/postgresql /var/lib/postgresql/data \
    && chown postgres:postgres /var/run/postgresql /var/lib/postgresql/data && chmod 700 /var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PGDATA=/var/lib/postgresql/data
USER postgres
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
