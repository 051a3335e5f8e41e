# Airbyte custom-connector image of source-postmark.
#   docker build -t source-postmark:0.1.0 .
#   docker run --rm source-postmark:0.1.0 spec
# The build stage runs the same command as the README: cargo build --release --locked.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY catalogs ./catalogs
COPY tests ./tests
RUN cargo build --release --locked --bin source-postmark

FROM debian:bookworm-slim
# TLS roots are compiled into the binary (rustls + webpki-roots): no CA package needed.
RUN useradd --create-home --uid 1000 airbyte \
 && mkdir -p /airbyte/bin \
 && chown -R airbyte /airbyte
COPY --from=build --chown=airbyte /src/target/release/source-postmark /airbyte/bin/source-postmark
ENV AIRBYTE_ENTRYPOINT="/airbyte/bin/source-postmark"
ENTRYPOINT ["/airbyte/bin/source-postmark"]
LABEL io.airbyte.name="source-postmark" \
      io.airbyte.version="0.1.0"
# Numeric, so Kubernetes runAsNonRoot can verify it (the user is "airbyte").
USER 1000:1000
WORKDIR /airbyte
