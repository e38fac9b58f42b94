# syntax=docker/dockerfile:1
#
# The `asap` agent as a container image: one static binary on an empty (scratch) base,
# running as uid/gid 65532, its SQLite state in the /data volume.
#
#   docker build -t asap .
#   docker run -d -p 127.0.0.1:8000:8000 -v asap-data:/data asap
#   docker buildx build --platform linux/amd64,linux/arm64 -t asap .
#
# Configure it with ASAP_* variables (docs/configuration.md); the image sets
# ASAP_HOST=0.0.0.0 and ASAP_DATA_DIR=/data. Behind a proxy or published on another
# address, set ASAP_PUBLIC_URL so the manifest advertises where clients reach it.
#
# The runtime layout is the one scripts/container-test.sh builds with podman and checks
# (health, a task.request, the HEALTHCHECK, SIGTERM, /data ownership); keep them alike.

# ---- build: a static binary (glibc, +crt-static) for the platform being built --------
FROM rust:1.95-bookworm AS build
# Set by buildx (amd64, arm64); a plain `docker build` may leave it empty: uname -m then.
ARG TARGETARCH
WORKDIR /src
COPY . .
# --target makes RUSTFLAGS apply to the binary only, not to build scripts and proc
# macros (which cannot be static). The release profile gives the optimisation.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    set -eu; \
    case "${TARGETARCH:-$(uname -m)}" in \
      amd64|x86_64) arch=x86_64 ;; \
      arm64|aarch64) arch=aarch64 ;; \
      *) echo "unsupported architecture: ${TARGETARCH:-$(uname -m)}" >&2; exit 1 ;; \
    esac; \
    target="$arch-unknown-linux-gnu"; \
    RUSTFLAGS="-C target-feature=+crt-static" \
      cargo build --release --locked -p asap-cli --target "$target"; \
    cp "target/$target/release/asap" /asap; \
    if readelf -l /asap | grep -q 'program interpreter'; then \
      echo "asap is dynamically linked; a scratch image cannot run it" >&2; exit 1; \
    fi; \
    /asap --version
# What the scratch image gets besides the binary: the state folder owned by the
# unprivileged user, and the CA bundle for outgoing HTTPS (OAuth2, webhooks, registry).
RUN mkdir /data && chown 65532:65532 /data \
    && test -s /etc/ssl/certs/ca-certificates.crt

# ---- runtime: nothing but the binary, the CA bundle and /data --------------------------
FROM scratch
LABEL org.opencontainers.image.title="asap" \
      org.opencontainers.image.description="ASAP (Async Simple Agent Protocol) agent server and CLI" \
      org.opencontainers.image.source="https://github.com/asap-protocol/asap-rs" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build --chown=65532:65532 /data /data
COPY --from=build /asap /asap
USER 65532:65532
ENV ASAP_HOST=0.0.0.0 \
    ASAP_DATA_DIR=/data \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
EXPOSE 8000
VOLUME /data
HEALTHCHECK CMD ["/asap","health","http://127.0.0.1:8000"]
ENTRYPOINT ["/asap"]
CMD ["serve"]
