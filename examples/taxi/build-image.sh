#!/bin/sh
# Build the taxi example's image, taxi-exp:0.0.1 (the tag docker-compose.yaml uses).
# Needs the project's base image, fogify-net/base:latest (images/base/build.sh); no registry is used.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tag=${TAXI_IMAGE:-taxi-exp:0.0.1}
if ! docker image inspect fogify-net/base:latest >/dev/null 2>&1; then
    echo "error: image fogify-net/base:latest is missing; build it first with images/base/build.sh" >&2
    exit 1
fi
docker build -t "$tag" "$here"
echo "built $tag"
