#!/bin/sh
# One-shot model-init service: prepares the model packages the server serves in /models. When the host
# folder mounted at /host-models (LIPSYNC_MODELS_DIR) holds anything, /models becomes a copy of it;
# otherwise the built-in demo avatar is written there.
set -eu

if [ -n "$(ls -A /host-models)" ]; then
  echo "model-init: copying the host's model packages into /models"
  # Start from empty so that a package removed on the host disappears here too.
  find /models -mindepth 1 -delete
  cp -R /host-models/. /models/
else
  echo "model-init: no host model packages; writing the demo avatar into /models"
  exec lipsync-server make-demo /models
fi
