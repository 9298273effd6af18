# device-lorawan image: a multi-stage build for linux/amd64 and linux/arm64
# (Raspberry Pi 4/5 with a 64-bit OS):
#   docker buildx build --platform linux/amd64,linux/arm64 -t device-lorawan .
# Each platform builds natively in its own stage (buildx runs arm64 under
# QEMU on an x86 host, or natively on the Pi / balena builders).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin device-lorawan \
 && strip target/release/device-lorawan

FROM debian:bookworm-slim
# The binary needs only glibc; no TLS roots, no shell tools.
COPY --from=build /src/target/release/device-lorawan /usr/local/bin/device-lorawan
COPY profiles /usr/share/device-lorawan/profiles
COPY compose/configuration.yaml /etc/device-lorawan/configuration.yaml
# State (frame counters, the outbox, stored secrets) lives in a volume.
RUN mkdir -p /var/lib/device-lorawan && chown 65532:65532 /var/lib/device-lorawan
USER 65532:65532
VOLUME /var/lib/device-lorawan
# 59995: EdgeX device-service API; 1700/udp: Semtech packet forwarder.
EXPOSE 59995 1700/udp
ENTRYPOINT ["/usr/local/bin/device-lorawan", "run", "--config", "/etc/device-lorawan/configuration.yaml"]
