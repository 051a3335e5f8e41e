# Airbyte custom-connector image of source-postmark (see docs/notes/docker.md).
#   docker build --network=host -t source-postmark:0.1.0 .
#   docker run --rm source-postmark:0.1.0 spec
# The build stage runs the same command as the README: cargo build --release --locked.
#
# The runtime image is assembled from scratch: the binary, the shared libraries it links
# (libc, libgcc_s and the loader, found with ldd in the stage it was linked in) and a static
# busybox for /bin/sh and the utilities Airbyte's launchers run around the connector (`sleep`,
# `touch`, `kill`): about 5 MB beside the 8 MB binary, where debian:bookworm-slim is 75 MB.
FROM rust:1.95-slim-bookworm AS build
# busybox-static: one self-contained file that provides /bin/sh and coreutils. Not pinned:
# Debian replaces a point release's version in place, a pin would break the build.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends busybox-static \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# Dependencies first, in their own layer: rebuilt only when Cargo.toml or Cargo.lock change.
# (Empty stand-ins for the crate's own targets; a touch below makes cargo rebuild them.)
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src/bin/fake_postmark \
 && echo 'fn main() {}' >src/main.rs \
 && echo 'fn main() {}' >src/bin/fake_postmark/main.rs \
 && cargo build --release --locked --bin source-postmark \
 && rm -rf src

COPY src ./src
COPY catalogs ./catalogs
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin source-postmark

# The runtime root file system, in /rootfs: the shared libraries the binary needs, busybox
# with one link per applet, the airbyte user (uid 1000, home /airbyte), and dpkg records of
# the three Debian packages it holds (where scanners such as trivy look in distroless images).
# /airbyte is kept apart, in /home-airbyte, so the runtime stage can copy it with its owner.
RUN mkdir -p /rootfs/bin /rootfs/etc /rootfs/tmp /rootfs/var/lib/dpkg/status.d /home-airbyte/bin \
 && chmod 1777 /rootfs/tmp \
 && cp target/release/source-postmark /home-airbyte/bin/ \
 && ldd target/release/source-postmark >/tmp/ldd.txt \
 && grep -o '/[^ ]*' /tmp/ldd.txt >/tmp/libs.txt \
 && xargs -a /tmp/libs.txt -I{} cp --parents -L {} /rootfs/ \
 && cp /bin/busybox /rootfs/bin/busybox \
 && for applet in $(/bin/busybox --list); do [ "$applet" = busybox ] || ln -s busybox "/rootfs/bin/$applet"; done \
 && printf 'root:x:0:0:root:/root:/bin/sh\nairbyte:x:1000:1000:airbyte:/airbyte:/bin/sh\n' >/rootfs/etc/passwd \
 && printf 'root:x:0:\nairbyte:x:1000:\n' >/rootfs/etc/group \
 && printf 'passwd: files\ngroup: files\nhosts: files dns\n' >/rootfs/etc/nsswitch.conf \
 && for pkg in libc6 libgcc-s1 busybox-static; do dpkg-query -s "$pkg" >"/rootfs/var/lib/dpkg/status.d/$pkg"; done

FROM scratch
# Everything but /airbyte is root's. /airbyte (the working directory, where the platform
# mounts config and catalog) and the binary belong to the airbyte user, as Airbyte expects.
# TLS roots are compiled into the binary (rustls + webpki-roots): no CA bundle needed.
COPY --from=build /rootfs/ /
COPY --from=build --chown=1000:1000 /home-airbyte/ /airbyte/
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    AIRBYTE_ENTRYPOINT="/airbyte/bin/source-postmark"
ENTRYPOINT ["/airbyte/bin/source-postmark"]
LABEL io.airbyte.name="source-postmark" \
      io.airbyte.version="0.1.0"
# Numeric, so Kubernetes runAsNonRoot can verify it (the user is "airbyte").
USER 1000:1000
WORKDIR /airbyte
