# One image per binary, selected by a build argument:
#
#   make docker-build                      # every image, after building the binaries
#   docker build --build-arg BINARY=millrace-io -t ghcr.io/millrace-dev/millrace-io:v0.1.0 .
#
# The binaries are static (CGO_ENABLED=0) and built by `make docker-binaries` into
# bin/linux/<arch>/ before the image is: the Dockerfile only copies them, so an image builds in
# seconds and holds exactly what the tests ran. Each stage runs as the distroless non-root user,
# with its binary on the PATH (/usr/local/bin), so that a Pipeline entity's `command` can name it.

# BINARY names one of the stages below: manager (the operator), millrace-io (the I/O sidecar),
# millrace-state (the state sidecar), identity, wordcount-split, wordcount-sum (example functions).
ARG BINARY=manager

FROM gcr.io/distroless/static-debian12:nonroot AS base
LABEL org.opencontainers.image.source="https://github.com/millrace-dev/millrace" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /
USER 65532:65532

FROM base AS manager
ARG TARGETARCH=amd64
LABEL org.opencontainers.image.title="millrace-operator" \
      org.opencontainers.image.description="The Millrace operator: reconciles Pipelines into Strimzi, KEDA and Prometheus Operator objects."
COPY --chmod=0555 bin/linux/${TARGETARCH}/manager /usr/local/bin/manager
ENTRYPOINT ["/usr/local/bin/manager"]

FROM base AS millrace-io
ARG TARGETARCH=amd64
LABEL org.opencontainers.image.title="millrace-io" \
      org.opencontainers.image.description="The I/O sidecar of Millrace executors: Kafka in, the function, Kafka out."
COPY --chmod=0555 bin/linux/${TARGETARCH}/millrace-io /usr/local/bin/millrace-io
ENTRYPOINT ["/usr/local/bin/millrace-io"]

FROM base AS millrace-state
ARG TARGETARCH=amd64
LABEL org.opencontainers.image.title="millrace-state" \
      org.opencontainers.image.description="The state sidecar of Millrace executors: keyed state with a compacted changelog."
COPY --chmod=0555 bin/linux/${TARGETARCH}/millrace-state /usr/local/bin/millrace-state
ENTRYPOINT ["/usr/local/bin/millrace-state"]

FROM base AS identity
ARG TARGETARCH=amd64
LABEL org.opencontainers.image.title="millrace-example-identity" \
      org.opencontainers.image.description="Example Millrace function: passes records through unchanged."
COPY --chmod=0555 bin/linux/${TARGETARCH}/identity /usr/local/bin/identity
ENTRYPOINT ["/usr/local/bin/identity"]

FROM base AS wordcount-split
ARG TARGETARCH=amd64
LABEL org.opencontainers.image.title="millrace-example-wordcount-split" \
      org.opencontainers.image.description="Example Millrace function: splits lines into words."
COPY --chmod=0555 bin/linux/${TARGETARCH}/wordcount-split /usr/local/bin/wordcount-split
ENTRYPOINT ["/usr/local/bin/wordcount-split"]

FROM base AS wordcount-sum
ARG TARGETARCH=amd64
LABEL org.opencontainers.image.title="millrace-example-wordcount-sum" \
      org.opencontainers.image.description="Example Millrace function: counts words with keyed state."
COPY --chmod=0555 bin/linux/${TARGETARCH}/wordcount-sum /usr/local/bin/wordcount-sum
ENTRYPOINT ["/usr/local/bin/wordcount-sum"]

# The image: the stage BINARY names.
FROM ${BINARY}
