# syntax=docker/dockerfile:1
# The aibatch worker image: a static binary on distroless, running as the
# non-root user 65532, with no shell. Build: make image
# It holds the gateway too (/usr/local/bin/gateway, docs/gateway.md), run
# with that as the command.
#
# The worker reads its configuration from the environment (README.md,
# Configuration); in Kubernetes see k8s/ and docs/kubernetes.md.

# Build on the builder's own platform and cross-compile for the target, so
# `docker buildx build --platform linux/amd64,linux/arm64` needs no emulation.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS=linux
ARG TARGETARCH
WORKDIR /src

# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download

COPY . .
# Static (CGO_ENABLED=0), no local paths (-trimpath), no symbol table or
# DWARF (-s -w): the binary runs on an image without libc. VERSION and
# COMMIT label aibatch_build_info (make image passes them; .git is not in
# the build context, so Go cannot stamp the commit itself).
ARG VERSION=dev
ARG COMMIT=unknown
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    GOEXPERIMENT=jsonv2 go build -trimpath \
      -ldflags "-s -w -X github.com/aibatch/aibatch/internal/buildinfo.version=${VERSION} -X github.com/aibatch/aibatch/internal/buildinfo.commit=${COMMIT}" \
      -o /out/ ./cmd/worker ./cmd/gateway

# distroless/static: CA certificates, /etc/passwd with the nonroot user, tzdata;
# no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/worker /out/gateway /usr/local/bin/
USER 65532:65532
# Admin server (/healthz, /readyz, /metrics) when ADMIN_ADDR=0.0.0.0:8080.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/worker"]
