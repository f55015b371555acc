#!/usr/bin/env bash
# hack/cluster.sh - a real single-node Kubernetes on this machine, without Docker: the project's
# equivalent of kind for the cluster tier (make test-e2e).
#
#   hack/cluster.sh build    build every binary into the cache (idempotent; cold ~5-25 min on 2 cores)
#   hack/cluster.sh up       build if needed, then start etcd, kube-apiserver, kube-controller-manager,
#                            kube-scheduler, containerd + runc, the kubelet, kube-proxy and CoreDNS.
#                            Idempotent: a healthy cluster is left as it is. Prints the KUBECONFIG
#                            path as the LAST line of stdout.
#   hack/cluster.sh down     stop everything up started and restore the host: processes, mounts,
#                            the bridge, iptables chains, ip_forward, cgroups, files outside the cache.
#   hack/cluster.sh status   exit 0 when the cluster is up and the node Ready
#   hack/cluster.sh kubeconfig   print the KUBECONFIG path
#   hack/cluster.sh load TAR...  import docker-archive image tarballs into the node's containerd
#   hack/cluster.sh ctr ARGS...  run ctr against the node's containerd (k8s.io namespace)
#
# What is real: Kubernetes v1.36.3 (apiserver, controller manager, scheduler, kubelet, kube-proxy,
# kubectl) and etcd 3.6.6 built from the Go module proxy, CoreDNS 1.14.4 (minimal plugin set),
# containerd, runc and the CNI plugins from Debian. Walls of this VM (see docs/e2e.md): cgroup v1
# (failCgroupV1: false), no CAP_SYS_RESOURCE (containerd restrict_oom_score_adj), the kubelet's
# sysctl writes (shadowed in its own mount namespace), forwarding (only cni0 -> cni0 is allowed).
#
# Addresses: bridge cni0 10.88.0.1/16 is the node IP and the apiserver's advertise address; pods
# 10.88.1.1-10.88.255.254; services 10.96.0.0/16 (DNS 10.96.0.10). Nothing leaves the machine:
# CoreDNS answers NXDOMAIN outside cluster.local and the guard chain drops forwarding off the bridge.
#
# Environment: MILLRACE_CACHE (default ~/.cache/millrace); binaries in $MILLRACE_CACHE/cluster/<v>/bin,
# state in $MILLRACE_CACHE/cluster/state (PKI and containerd's image store survive `down`; etcd does not).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KV="1.36.3"
COREDNS_VERSION="1.14.4"
CACHE="${MILLRACE_CACHE:-${HOME}/.cache/millrace}"
BIN="${CACHE}/cluster/${KV}/bin"
S="${CACHE}/cluster/state"
NODE=k8snode GW=10.88.0.1 POD_CIDR=10.88.0.0/16 SVC_CIDR=10.96.0.0/16 DNS_IP=10.96.0.10
PKGS="containerd runc containernetworking-plugins iptables conntrack openssl"
CTR=(ctr --address "${S}/run/containerd.sock" -n k8s.io)
export KUBECONFIG="${S}/admin.kubeconfig" PATH="${BIN}:${PATH}"

log() { printf '[cluster %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
waitfor() { local n=$1; shift; local i; for ((i = 0; i < n * 4; i++)); do if "$@" >/dev/null 2>&1; then return 0; fi; sleep 0.25; done; return 1; }
alive() { [[ -f "${S}/run/$1.pid" ]] && kill -0 "$(cat "${S}/run/$1.pid")" 2>/dev/null; }
start() { local name=$1; shift; nohup "$@" >"${S}/log/${name}.log" 2>&1 & echo $! >"${S}/run/${name}.pid"; }

# ---------------------------------------------------------------------------------------- build
build() {
  mkdir -p "${BIN}"
  local assets
  assets="$("${ROOT}/hack/envtest-assets.sh" | tail -n 1)" # kube-apiserver, kcm, etcd; same k8s module
  local b
  for b in kube-apiserver kube-controller-manager etcd; do ln -sf "${assets}/${b}" "${BIN}/${b}"; done
  export GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0
  local ld="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X ${pkg}.gitVersion=v${KV} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=$(cut -d. -f2 <<<"${KV}") -X ${pkg}.gitTreeState=clean"
  done
  exec 9>"${CACHE}/envtest.lock"
  flock 9
  for b in kubelet kube-scheduler kube-proxy kubectl; do
    [[ -x "${BIN}/${b}" ]] && continue
    log "building ${b} v${KV}"
    (cd "${CACHE}/build/k8s" && go build -trimpath -ldflags "${ld}" -o "${BIN}/.${b}.tmp" "k8s.io/kubernetes/cmd/${b}")
    mv -f "${BIN}/.${b}.tmp" "${BIN}/${b}"
  done
  if [[ ! -x "${BIN}/coredns" ]]; then
    log "building CoreDNS ${COREDNS_VERSION} (plugins: kubernetes, template, cache, health, ready, ...)"
    local m="${CACHE}/build/coredns-${COREDNS_VERSION}"
    mkdir -p "${m}"
    cp "${ROOT}/hack/cluster/coredns/main.go.txt" "${m}/main.go"
    (cd "${m}" && printf 'module millrace.local/coredns\n\ngo 1.25\n\nrequire github.com/coredns/coredns v%s\n' "${COREDNS_VERSION}" >go.mod &&
      go mod tidy >&2 && go build -trimpath -ldflags "-s -w" -o "${BIN}/.coredns.tmp" .)
    mv -f "${BIN}/.coredns.tmp" "${BIN}/coredns"
  fi
  (cd "${ROOT}" && go build -trimpath -ldflags "-s -w" -o "${BIN}/pause" ./hack/cluster/pause)
  exec 9>&-
  if ! dpkg -s ${PKGS} >/dev/null 2>&1; then
    log "installing ${PKGS}"
    apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q ${PKGS} >&2
  fi
}

# ---------------------------------------------------------------------------------------- status
ready() {
  alive etcd && alive kube-apiserver && alive kube-controller-manager && alive kube-scheduler &&
    alive containerd && alive kubelet && alive kube-proxy || return 1
  kubectl get node "${NODE}" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True || return 1
  [[ "$(kubectl -n kube-system get deploy coredns -o jsonpath='{.status.readyReplicas}' 2>/dev/null)" == 1 ]]
}

# ---------------------------------------------------------------------------------------- PKI
pki() {
  [[ -f "${S}/pki/.complete" ]] && return 0
  rm -rf "${S}/pki"; mkdir -p "${S}/pki"
  (
    cd "${S}/pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=millrace-node-ca" 2>/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -keyout front-proxy-ca.key -out front-proxy-ca.crt -days 3650 -subj "/CN=millrace-front-proxy-ca" 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null; openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    sign() { # name CN O SANs [ca]
      local n=$1 cn=$2 o=$3 sans=$4 ca=${5:-ca}
      openssl genrsa -out "$n.key" 2048 2>/dev/null
      openssl req -new -key "$n.key" -out "$n.csr" -subj "/CN=${cn}${o:+/O=$o}" 2>/dev/null
      { echo "basicConstraints=CA:FALSE"; echo "keyUsage=critical,digitalSignature,keyEncipherment"
        if [[ -n "${sans}" ]]; then echo "extendedKeyUsage=serverAuth,clientAuth"; echo "subjectAltName=${sans}"; else echo "extendedKeyUsage=clientAuth"; fi; } >"$n.ext"
      openssl x509 -req -in "$n.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial -out "$n.crt" -days 3650 -extfile "$n.ext" 2>/dev/null
    }
    sign apiserver kube-apiserver "" "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:${GW},IP:10.96.0.1"
    sign admin kubernetes-admin system:masters ""
    sign apiserver-kubelet-client kube-apiserver-kubelet-client system:masters ""
    sign front-proxy-client front-proxy-client "" "" front-proxy-ca
    sign kubelet "system:node:${NODE}" system:nodes ""
    sign kubelet-serving "system:node:${NODE}" system:nodes "DNS:${NODE},DNS:localhost,IP:127.0.0.1,IP:${GW}"
    sign controller-manager system:kube-controller-manager "" ""
    sign scheduler system:kube-scheduler "" ""
    sign kube-proxy system:kube-proxy "" ""
  )
  local u
  for u in admin kubelet controller-manager scheduler kube-proxy; do
    cat >"${S}/${u}.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: millrace-node, cluster: {certificate-authority: ${S}/pki/ca.crt, server: "https://127.0.0.1:6443"}}]
users: [{name: ${u}, user: {client-certificate: ${S}/pki/${u}.crt, client-key: ${S}/pki/${u}.key}}]
contexts: [{name: millrace-node, context: {cluster: millrace-node, user: ${u}}}]
current-context: millrace-node
EOF
  done
  date -u +%FT%TZ >"${S}/pki/.complete"
}

# ---------------------------------------------------------------------------------------- up
up() {
  [[ $EUID -eq 0 ]] || die "the node needs root (containerd, the kubelet, the bridge)"
  if ready; then log "already up"; echo "${KUBECONFIG}"; return 0; fi
  if compgen -G "${S}/run/*.pid" >/dev/null; then log "a partial cluster is running; taking it down first"; down; fi
  build
  local t0; t0=$(date +%s)
  rm -rf "${S}/etcd" "${S}/log" "${S}/kubelet" "${S}/cni-ipam"
  mkdir -p "${S}"/{run,log/pods,etcd,kubelet,containerd/root,containerd/state,cni-conf,cni-ipam,sysctl-shadow,images}
  pki
  local P="${S}/pki"

  # containerd (CRI) with runc and overlayfs
  cat >"${S}/containerd/config.toml" <<EOF
version = 2
root = "${S}/containerd/root"
state = "${S}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs","io.containerd.snapshotter.v1.btrfs","io.containerd.snapshotter.v1.devmapper","io.containerd.snapshotter.v1.zfs","io.containerd.internal.v1.opt"]
[grpc]
  address = "${S}/run/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "millrace.local/pause:1"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  # This VM's capability bounding set lacks CAP_SYS_RESOURCE: runc cannot write a negative
  # oom_score_adj ("can't get final child's PID from pipe: EOF") unless containerd restricts it.
  restrict_oom_score_adj = true
  tolerate_missing_hugetlb_controller = true
  disable_hugetlb_controller = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
        Root = "${S}/run/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${S}/cni-conf"
    max_conf_num = 1
EOF
  start containerd containerd --config "${S}/containerd/config.toml"
  waitfor 30 "${CTR[@]}" version || die "containerd did not start (${S}/log/containerd.log)"
  "${CTR[@]}" images ls -q 2>/dev/null | grep -qx 'millrace.local/pause:1' || image_of_binary millrace.local/pause:1 "${BIN}/pause" /pause
  "${CTR[@]}" images ls -q 2>/dev/null | grep -qx 'millrace.local/coredns:1' || image_of_binary millrace.local/coredns:1 "${BIN}/coredns" /coredns
  log "containerd up"

  # network: the bridge carries the gateway (node) address; forwarding only cni0 -> cni0
  ip link show cni0 >/dev/null 2>&1 || { ip link add cni0 type bridge; ip addr add "${GW}/16" dev cni0; ip link set cni0 up; }
  cat >"${S}/cni-conf/10-millrace.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "millrace-node", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": false, "isDefaultGateway": false, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "${S}/cni-ipam",
            "ranges": [[{"subnet": "${POD_CIDR}", "rangeStart": "10.88.1.1", "rangeEnd": "10.88.255.254", "gateway": "${GW}"}]],
            "routes": [{"dst": "0.0.0.0/0", "gw": "${GW}"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
  [[ -f "${S}/ip_forward.orig" ]] || cat /proc/sys/net/ipv4/ip_forward >"${S}/ip_forward.orig"
  if iptables -N MILLRACE-GUARD 2>/dev/null; then
    iptables -A MILLRACE-GUARD -i cni0 -o cni0 -j RETURN
    iptables -A MILLRACE-GUARD -j DROP
    iptables -A FORWARD -j MILLRACE-GUARD
  fi
  echo 1 >/proc/sys/net/ipv4/ip_forward

  # control plane
  start etcd "${BIN}/etcd" --name "${NODE}" --data-dir "${S}/etcd" --listen-client-urls http://127.0.0.1:2379 \
    --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 \
    --initial-advertise-peer-urls http://127.0.0.1:2380 --initial-cluster "${NODE}=http://127.0.0.1:2380" \
    --listen-metrics-urls http://127.0.0.1:2381 --unsafe-no-fsync
  start kube-apiserver "${BIN}/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
    --bind-address=0.0.0.0 --advertise-address="${GW}" --secure-port=6443 \
    --tls-cert-file="${P}/apiserver.crt" --tls-private-key-file="${P}/apiserver.key" --client-ca-file="${P}/ca.crt" \
    --kubelet-client-certificate="${P}/apiserver-kubelet-client.crt" --kubelet-client-key="${P}/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --requestheader-client-ca-file="${P}/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="${P}/front-proxy-client.crt" --proxy-client-key-file="${P}/front-proxy-client.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="${P}/sa.pub" --service-account-signing-key-file="${P}/sa.key" \
    --service-cluster-ip-range="${SVC_CIDR}" --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true --profiling=false
  waitfor 90 curl -sf --cacert "${P}/ca.crt" https://127.0.0.1:6443/readyz || die "kube-apiserver not ready (${S}/log/kube-apiserver.log)"
  log "kube-apiserver ready"
  # The HPA syncs every 5 s (default 15 s) so that scaling scenarios stay short; KEDA's own
  # polling interval is set per ScaledObject.
  start kube-controller-manager "${BIN}/kube-controller-manager" --kubeconfig="${S}/controller-manager.kubeconfig" \
    --authentication-kubeconfig="${S}/controller-manager.kubeconfig" --authorization-kubeconfig="${S}/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --service-account-private-key-file="${P}/sa.key" --root-ca-file="${P}/ca.crt" \
    --cluster-signing-cert-file="${P}/ca.crt" --cluster-signing-key-file="${P}/ca.key" --use-service-account-credentials=true \
    --service-cluster-ip-range="${SVC_CIDR}" --controllers='*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller' \
    --horizontal-pod-autoscaler-sync-period=5s --leader-elect=false
  start kube-scheduler "${BIN}/kube-scheduler" --kubeconfig="${S}/scheduler.kubeconfig" \
    --authentication-kubeconfig="${S}/scheduler.kubeconfig" --authorization-kubeconfig="${S}/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false

  # kubelet, in cgroups under /k8snode-millrace of every v1 controller
  local c
  for c in cpu cpuacct cpuset memory devices freezer blkio pids systemd; do mkdir -p "/sys/fs/cgroup/${c}/millrace-node"; done
  cat /sys/fs/cgroup/cpuset/cpuset.cpus >/sys/fs/cgroup/cpuset/millrace-node/cpuset.cpus
  cat /sys/fs/cgroup/cpuset/cpuset.mems >/sys/fs/cgroup/cpuset/millrace-node/cpuset.mems
  printf 'nameserver %s\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n' "${DNS_IP}" >"${S}/resolv.conf"
  cat >"${S}/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /millrace-node
cgroupsPerQOS: true
enforceNodeAllocatable: ["pods"]
containerRuntimeEndpoint: unix://${S}/run/containerd.sock
failSwapOn: false
address: ${GW}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
tlsCertFile: ${P}/kubelet-serving.crt
tlsPrivateKeyFile: ${P}/kubelet-serving.key
authentication: {anonymous: {enabled: false}, webhook: {enabled: true}, x509: {clientCAFile: ${P}/ca.crt}}
authorization: {mode: Webhook}
clusterDomain: cluster.local
clusterDNS: ["${DNS_IP}"]
resolvConf: ${S}/resolv.conf
podLogsDir: ${S}/log/pods
# ConfigMap volumes refresh within ~2 s (the default 1m gives up to 60-90 s): hot reload scenarios.
syncFrequency: 1s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%"}
serializeImagePulls: false
makeIPTablesUtilChains: false
protectKernelDefaults: false
maxPods: 250
EOF
  # Volume mounts the kubelet makes (projected-token tmpfs) must reach containerd's namespace.
  grep -q " ${S}/kubelet " /proc/self/mountinfo || { mount --bind "${S}/kubelet" "${S}/kubelet"; mount --make-rshared "${S}/kubelet"; }
  # The kubelet writes vm.overcommit_memory, kernel.panic, ...: in its own mount namespace those
  # /proc/sys files are shadowed by files holding the values it wants, so the host keeps its own.
  cat >"${S}/kubelet-ns.sh" <<EOF
#!/bin/bash
set -e
for kv in vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1 kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000; do
  k=\${kv%=*}; v=\${kv#*=}
  if [ "\$(cat /proc/sys/\$k)" != "\$v" ]; then f=${S}/sysctl-shadow/\$(echo \$k | tr / _); echo \$v > \$f; mount --bind \$f /proc/sys/\$k; fi
done
exec ${BIN}/kubelet "\$@"
EOF
  chmod +x "${S}/kubelet-ns.sh"
  start kubelet unshare -m --propagation unchanged "${S}/kubelet-ns.sh" --config="${S}/kubelet-config.yaml" \
    --kubeconfig="${S}/kubelet.kubeconfig" --root-dir="${S}/kubelet" --hostname-override="${NODE}" --node-ip="${GW}"
  waitfor 120 sh -c "kubectl get node ${NODE} -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -q True" ||
    die "node not Ready (${S}/log/kubelet.log)"
  log "node Ready"

  cat >"${S}/kube-proxy-config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: ${S}/kube-proxy.kubeconfig}
hostnameOverride: ${NODE}
clusterCIDR: ${POD_CIDR}
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["${GW}/32"]
iptables: {localhostNodePorts: false, syncPeriod: 10s, minSyncPeriod: 0s}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s, udpTimeout: 0s, udpStreamTimeout: 0s}
EOF
  start kube-proxy "${BIN}/kube-proxy" --config="${S}/kube-proxy-config.yaml"
  kubectl apply --server-side -f "${ROOT}/hack/cluster/coredns.yaml" >/dev/null
  waitfor 90 kubectl -n kube-system rollout status deploy/coredns --timeout=1s || die "CoreDNS not ready"
  waitfor 30 sh -c "iptables -t nat -S KUBE-SERVICES | grep -q kube-system/kube-dns:dns" || die "kube-proxy has no rule for kube-dns"
  waitfor 30 kubectl get serviceaccount default -n default || die "no default ServiceAccount"
  log "up in $(($(date +%s) - t0))s; export KUBECONFIG=${KUBECONFIG}"
  echo "${KUBECONFIG}"
}

# image_of_binary REF BINARY ENTRY: a one-binary image for the node's own pods (pause, CoreDNS).
image_of_binary() {
  local ref=$1 bin=$2 entry=$3 dir="${S}/images/$(tr '/:.' '___' <<<"$1")"
  mkdir -p "${dir}"
  (cd "${ROOT}" && go run ./hack/imagebuild -raw "${bin}=${entry}" -out "${dir}" "$(basename "${bin}")=${ref}" >/dev/null)
  "${CTR[@]}" images import "${dir}/$(basename "${bin}").tar" >/dev/null
}

# ---------------------------------------------------------------------------------------- down
stop() {
  local f="${S}/run/$1.pid"
  [[ -f "${f}" ]] || return 0
  local p; p=$(cat "${f}")
  if kill -0 "${p}" 2>/dev/null; then
    kill "${p}" 2>/dev/null || true
    local i; for ((i = 0; i < 60; i++)); do kill -0 "${p}" 2>/dev/null || break; sleep 0.25; done
    kill -9 "${p}" 2>/dev/null || true
  fi
  rm -f "${f}"
}

down() {
  # 1. no controller recreates pods; the kubelet stops every pod (CNI DEL, unmounts)
  stop kube-controller-manager; stop kube-scheduler
  if alive kubelet && kubectl get --raw /readyz >/dev/null 2>&1; then
    kubectl delete pods --all -A --grace-period=1 --wait=false >/dev/null 2>&1 || true
    local i; for ((i = 0; i < 120; i++)); do [[ "$(kubectl get pods -A --no-headers 2>/dev/null | wc -l)" == 0 ]] && break; sleep 0.5; done
  fi
  stop kube-proxy; [[ -x "${BIN}/kube-proxy" ]] && "${BIN}/kube-proxy" --cleanup >/dev/null 2>&1 || true
  stop kubelet
  # 2. anything left in containerd, then containerd and its shims
  if [[ -S "${S}/run/containerd.sock" ]] && alive containerd; then
    local t
    for t in $("${CTR[@]}" tasks ls -q 2>/dev/null); do "${CTR[@]}" tasks kill -s SIGKILL "${t}" 2>/dev/null || true; done
    sleep 1
    for t in $("${CTR[@]}" tasks ls -q 2>/dev/null); do "${CTR[@]}" tasks delete -f "${t}" 2>/dev/null || true; done
    for t in $("${CTR[@]}" containers ls -q 2>/dev/null); do "${CTR[@]}" containers delete "${t}" 2>/dev/null || true; done
  fi
  stop containerd
  local d c
  for d in /proc/[0-9]*; do
    c=$(tr '\0' ' ' 2>/dev/null <"${d}/cmdline" || true)
    case "${c}" in *containerd-shim-runc-v2*"${S}/run/containerd.sock"*) kill -9 "${d#/proc/}" 2>/dev/null || true ;; esac
  done
  stop kube-apiserver; stop etcd
  # 3. mounts under the state dir (deepest first), bridge, iptables, ip_forward, cgroups
  local m
  for m in $(awk -v s="${S}" 'index($5, s)==1 {print $5}' /proc/self/mountinfo | sort -r); do umount -l "${m}" 2>/dev/null || true; done
  ip link del cni0 2>/dev/null || true
  for c in INPUT OUTPUT; do iptables -D "${c}" -j KUBE-FIREWALL 2>/dev/null || true; done
  iptables -F KUBE-FIREWALL 2>/dev/null || true; iptables -X KUBE-FIREWALL 2>/dev/null || true
  iptables -D FORWARD -j MILLRACE-GUARD 2>/dev/null || true
  iptables -F MILLRACE-GUARD 2>/dev/null || true; iptables -X MILLRACE-GUARD 2>/dev/null || true
  local tb ch r
  for tb in nat filter; do
    for ch in $(iptables -t "${tb}" -S 2>/dev/null | awk '/^-N CNI-/{print $2}'); do
      iptables -t "${tb}" -S | grep -- "-j ${ch}\b" | sed 's/^-A/-D/' | while read -r r; do iptables -t "${tb}" ${r} 2>/dev/null || true; done
      iptables -t "${tb}" -F "${ch}" 2>/dev/null || true; iptables -t "${tb}" -X "${ch}" 2>/dev/null || true
    done
  done
  [[ -f "${S}/ip_forward.orig" ]] && cat "${S}/ip_forward.orig" >/proc/sys/net/ipv4/ip_forward && rm -f "${S}/ip_forward.orig"
  for c in cpu cpuacct cpuset memory devices freezer blkio pids systemd unified; do
    [[ -d "/sys/fs/cgroup/${c}/millrace-node" ]] && find "/sys/fs/cgroup/${c}/millrace-node" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  # containerd 1.6 always makes these empty folders; the kubelet makes its device-plugin socket
  # folder under /var/lib/kubelet whatever --root-dir says; libcni caches results in /var/lib/cni.
  rmdir /run/containerd/s /run/containerd/fifo /run/containerd 2>/dev/null || true
  rm -rf /var/lib/kubelet/device-plugins; rmdir /var/lib/kubelet 2>/dev/null || true
  rm -rf /var/lib/cni/results; rmdir /var/lib/cni 2>/dev/null || true
  rm -rf "${S}/etcd" "${S}/kubelet"
  log "down: mounts left $(grep -c "${S}" /proc/self/mountinfo || true), cgroups left $(ls -d /sys/fs/cgroup/*/millrace-node 2>/dev/null | wc -l), ip_forward $(cat /proc/sys/net/ipv4/ip_forward)"
}

case "${1:-}" in
build) build ;;
up) up ;;
down) down ;;
status) ready && log "up; KUBECONFIG=${KUBECONFIG}" || { log "not running"; exit 1; } ;;
kubeconfig) echo "${KUBECONFIG}" ;;
load)
  shift
  alive containerd || die "the cluster is not up"
  for t in "$@"; do "${CTR[@]}" images import "${t}" >/dev/null; log "loaded ${t}"; done
  ;;
ctr) shift; "${CTR[@]}" "$@" ;;
*) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
