#!/bin/sh
# Entrypoint wrapper of the compose vLLM services: runs the server command given as arguments
# with VLLM_API_KEY read from the compose secret vllm_api_key (the file the appliance reads as
# APPLIANCE_VLLM_API_KEY_FILE). Compose has no secret-to-environment for file secrets; this keeps
# the key out of the container's configuration (docker inspect) and off the command line. It
# refuses to start the server without a key rather than serve /v1 to anyone.
# vLLM checks the key on /v1 only: /health, which the healthchecks call, stays open.
#   DOCCLASS_VLLM_API_KEY_FILE: the key file (default /run/secrets/vllm_api_key)
set -eu
file=${DOCCLASS_VLLM_API_KEY_FILE:-/run/secrets/vllm_api_key}
if [ ! -r "$file" ]; then
  echo "vllm-with-api-key: cannot read $file: not starting vLLM without its API key" >&2
  exit 78
fi
key=$(tr -d '\r\n' <"$file")
if [ -z "$key" ]; then
  echo "vllm-with-api-key: $file is empty: not starting vLLM without an API key" >&2
  exit 78
fi
[ "$#" -gt 0 ] || { echo "usage: $0 SERVER-COMMAND [ARGS...]" >&2; exit 64; }
VLLM_API_KEY=$key
export VLLM_API_KEY
unset key
exec "$@"
