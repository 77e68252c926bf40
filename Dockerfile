# The Deich manager image: a static binary on distroless, running as the non-root user 65532.
#
#   docker build -t ghcr.io/deich-io/deich:v0.1.0 .
#
# Cross-builds (docker buildx build --platform linux/amd64,linux/arm64) compile on the build
# machine's platform for each target, without emulation.

FROM --platform=$BUILDPLATFORM golang:1.26 AS builder
ARG TARGETOS=linux
ARG TARGETARCH
ENV GOTOOLCHAIN=local
WORKDIR /src

# Dependencies first, so source changes reuse the cached module download.
COPY go.mod go.sum ./
RUN go mod download

COPY main.go ./
COPY api/ api/
COPY controllers/ controllers/
COPY internal/ internal/
COPY cmd/ cmd/
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/manager . && \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/kubectl-deich ./cmd/kubectl-deich

FROM gcr.io/distroless/static:nonroot
LABEL org.opencontainers.image.source="https://github.com/deich-io/deich" \
      org.opencontainers.image.description="Deich: mirrors shared services to a partner site and fails over without split-brain" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/manager /manager
# The kubectl plugin, for a toolbox pod: kubectl cp it out, or run it with --entrypoint.
COPY --from=builder /out/kubectl-deich /kubectl-deich
USER 65532:65532
ENTRYPOINT ["/manager"]
