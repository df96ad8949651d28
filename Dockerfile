# fleetscan images: static binaries on scratch, non-root, with CA certificates.
#
#   docker build --target worker -t fleetscan/worker:dev .
#
# Targets: dispatcher, worker, reporter, fleetscan (all-in-one). Without a
# reachable registry for the Go base image, use `make images` instead: it
# builds the same binaries on the host and packs them FROM scratch.
# Classic-builder compatible (no BuildKit-only syntax).

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so source edits reuse the download layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# Trivy imports encoding/json/v2: GOEXPERIMENT=jsonv2 is required.
ENV CGO_ENABLED=0 GOEXPERIMENT=jsonv2 GOFLAGS=-trimpath GOWORK=off
RUN mkdir -p /out && \
    for cmd in cmd/*/; do \
      name=$(basename "$cmd"); \
      [ -f "$cmd/main.go" ] || continue; \
      go build -ldflags "-s -w -X github.com/fleetscan/fleetscan/internal/version.Version=${VERSION}" -o "/out/$name" "./$cmd" || exit 1; \
    done && \
    ls -l /out && \
    mkdir -p /rootfs/tmp /rootfs/etc/ssl/certs && chmod 1777 /rootfs/tmp && \
    cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ && \
    echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' > /rootfs/etc/passwd && \
    echo 'nonroot:x:65532:' > /rootfs/etc/group

FROM scratch AS base
COPY --from=build /rootfs/ /
USER 65532:65532
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt

FROM base AS dispatcher
COPY --from=build /out/dispatcher /usr/local/bin/dispatcher
ENTRYPOINT ["/usr/local/bin/dispatcher"]

FROM base AS worker
COPY --from=build /out/worker /usr/local/bin/worker
ENTRYPOINT ["/usr/local/bin/worker"]

FROM base AS reporter
COPY --from=build /out/reporter /usr/local/bin/reporter
ENTRYPOINT ["/usr/local/bin/reporter"]

FROM base AS fleetscan
COPY --from=build /out/fleetscan /usr/local/bin/fleetscan
ENTRYPOINT ["/usr/local/bin/fleetscan"]
