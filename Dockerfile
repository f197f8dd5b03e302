# twostep: the admission webhook (twostep-webhook), the admin CLI (twostep-enroll) and the kubectl
# plugin (kubectl-twostep) in one image.
#   docker build -t REGISTRY/twostep:0.1.0 .
# Both stages install their Debian packages with scripts/install-deps.sh, the single list of what
# the project needs to build and to run (tests/deploy/dockerfile_test.sh checks that every shared
# library of the binaries comes from the runtime list).

# ---- build: Debian 12 with the build dependencies ----
FROM debian:12 AS build
COPY scripts/install-deps.sh /src/scripts/install-deps.sh
RUN /src/scripts/install-deps.sh build && rm -rf /var/lib/apt/lists/*
COPY . /src
WORKDIR /src
RUN cmake --preset release -DTWOSTEP_BUILD_BENCH=OFF \
 && cmake --build --preset release \
 && cmake --install build/release --prefix /out/usr/local --strip

# ---- runtime: Debian 12 slim with only the runtime libraries ----
FROM debian:12-slim
COPY scripts/install-deps.sh /usr/local/share/twostep/install-deps.sh
RUN /usr/local/share/twostep/install-deps.sh runtime \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
# A fixed numeric non-root user (Kubernetes runAsNonRoot checks the number); the database
# directory is the only place the webhook writes, besides /tmp.
RUN groupadd --system --gid 65532 twostep \
 && useradd --system --uid 65532 --gid 65532 --home-dir /var/lib/twostep --no-create-home \
      --shell /usr/sbin/nologin twostep \
 && install -d -o 65532 -g 65532 -m 0700 /var/lib/twostep \
 && install -d -m 0755 /etc/twostep /etc/twostep/tls
COPY --from=build /out/usr/local/bin/twostep-webhook /out/usr/local/bin/twostep-enroll \
     /out/usr/local/bin/kubectl-twostep /usr/local/bin/
LABEL org.opencontainers.image.title="twostep" \
      org.opencontainers.image.description="TOTP two-step verification for Kubernetes changes"
VOLUME ["/var/lib/twostep"]
USER 65532:65532
EXPOSE 8443
# The image's contract, which deploy/ mounts to: the serving certificate in /etc/twostep/tls
# (reloaded when it changes), the master key in /etc/twostep/master.key (mode 0400 or 0600, owned
# by uid 65532), the SQLite database on the volume. CMD holds the database so that
# `args` (Kubernetes) or trailing arguments (docker run) can replace it, e.g. with TWOSTEP_DB.
ENTRYPOINT ["/usr/local/bin/twostep-webhook", "--listen=0.0.0.0:8443", \
            "--tls-cert=/etc/twostep/tls/tls.crt", "--tls-key=/etc/twostep/tls/tls.key", \
            "--master-key-file=/etc/twostep/master.key"]
CMD ["--db=/var/lib/twostep/twostep.db"]
