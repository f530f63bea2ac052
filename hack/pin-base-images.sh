#!/usr/bin/env bash
# Pins the Dockerfile's base images: resolves each *_IMAGE tag to the digest of its multi-platform
# index (needs docker buildx and `docker login dhi.io`) and writes it into the matching *_DIGEST
# argument. Run it to update a base image, review the diff, commit it. The digest is the index's,
# not one platform's, so one pin serves both linux/amd64 and linux/arm64.
set -euo pipefail
cd "$(dirname "$0")/.."
dockerfile=Dockerfile

# Each FROM line names image:tag@${NAME_DIGEST}; NAME_DIGEST is an ARG at the top of the file.
pins=$(sed -nE 's/^FROM (--platform=[^ ]+ )?([^@ ]+)@\$\{([A-Z_]+)_DIGEST\}.*/\3 \2/p' "$dockerfile")
[[ -n $pins ]] || { echo "pin-base-images: no FROM image:tag@\${*_DIGEST} line in $dockerfile" >&2; exit 1; }
while read -r name ref; do
  grep -q "^ARG ${name}_DIGEST=" "$dockerfile" || { echo "pin-base-images: no 'ARG ${name}_DIGEST=' in $dockerfile" >&2; exit 1; }
  platforms=$(docker buildx imagetools inspect "$ref" \
    --format '{{range .Manifest.Manifests}}{{.Platform.OS}}/{{.Platform.Architecture}} {{end}}')
  for p in linux/amd64 linux/arm64; do
    [[ " $platforms " == *" $p "* ]] || { echo "pin-base-images: $ref has no $p image ($platforms)" >&2; exit 1; }
  done
  digest=$(docker buildx imagetools inspect "$ref" --format '{{.Manifest.Digest}}')
  [[ $digest =~ ^sha256:[0-9a-f]{64}$ ]] || { echo "pin-base-images: $ref: unexpected digest '$digest'" >&2; exit 1; }
  sed -i "s/^ARG ${name}_DIGEST=.*/ARG ${name}_DIGEST=${digest}/" "$dockerfile"
  echo "$ref@$digest"
done <<<"$pins"
