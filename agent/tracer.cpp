#include "agent/tracer.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <ctime>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>

#include "common/unique_fd.hpp"
#include "depgraph.skel.h"

namespace depgraph {

struct Tracer::Skeleton {
    std::unique_ptr<depgraph_bpf, Free<depgraph_bpf__destroy>> bpf;
    // sock_slots, mapped read-only once loaded: the slots are scanned in place.
    const dg_sock_slot* slots = nullptr;
    ~Skeleton() {
        if (slots) ::munmap(const_cast<dg_sock_slot*>(slots), kSlotsBytes);
    }
    static constexpr size_t kSlotsBytes = sizeof(dg_sock_slot) * DG_SOCK_SLOTS;
    // The kernel lays the values out 8-byte aligned: the mapping is the array only if they already are.
    static_assert(sizeof(dg_sock_slot) % 8 == 0);
};

namespace {

bool g_libbpf_verbose = false;

// Without -v libbpf stays quiet: its failures reach the user as our own
// one-line errors, not as a page of verifier output.
int libbpf_print(enum libbpf_print_level, const char* format, va_list args) {
    return g_libbpf_verbose ? std::vfprintf(stderr, format, args) : 0;
}

// Where the programs cannot load, --source conntrack is the fallback; but
// not for want of privileges alone, since conntrack needs them too.
Error load_error(const char* what, int err) {
    std::string message = std::string(what) + ": " + errno_text(err);
    // Refused to root, it is the kernel's policy (lockdown, an LSM), not a missing privilege.
    if ((err == -EPERM || err == -EACCES) && geteuid() == 0) {
        return Error{message + " (refused although running as root: kernel lockdown or a security module? "
                               "or use --source conntrack)"};
    }
    if (err == -EPERM || err == -EACCES) {
        return Error{message + " (run depgraph-agent as root, or with CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN; "
                               "--source conntrack needs root or CAP_NET_ADMIN)"};
    }
    return Error{message + " (or use --source conntrack)"};
}

// Calls `each` on every value of the map, read in chunks that keep the
// agent's memory small. `what` names the map in an error.
template <typename Key, typename Value, typename Each>
Status for_each_value(int fd, const char* what, Each each) {
    constexpr uint32_t kChunk = 4096;
    std::vector<Key> keys(kChunk);
    std::vector<Value> values(kChunk);
    Key next{};
    for (bool first = true, more = true; more; first = false) {
        uint32_t count = kChunk;
        int err = bpf_map_lookup_batch(fd, first ? nullptr : &next, &next, keys.data(), values.data(), &count, nullptr);
        if (err != 0 && errno != ENOENT) return errno_error(std::string("failed to read the ") + what, errno);
        more = err == 0;
        for (uint32_t i = 0; i < count; ++i) each(values[i]);
    }
    return ok_status();
}

}  // namespace

void set_libbpf_verbose(bool verbose) {
    g_libbpf_verbose = verbose;
    libbpf_set_print(libbpf_print);
}

Tracer::Tracer(std::unique_ptr<Skeleton> skel) : skel_(std::move(skel)) {}
Tracer::Tracer(Tracer&&) noexcept = default;
Tracer& Tracer::operator=(Tracer&&) noexcept = default;
Tracer::~Tracer() = default;

Result<Tracer> Tracer::start(uint32_t netns_filter) {
    // CO-RE relocates against the kernel's BTF; without it loading fails with
    // a cryptic ENOENT, so say what is missing instead.
    if (!std::filesystem::exists("/sys/kernel/btf/vmlinux")) {
        return Error{"this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): "
                     "depgraph-agent needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (or use --source conntrack)"};
    }
    libbpf_set_print(libbpf_print);
    auto skel = std::make_unique<Skeleton>();
    skel->bpf.reset(depgraph_bpf__open());
    if (!skel->bpf) return load_error("failed to open the BPF object", -errno);
    skel->bpf->rodata->filter_netns_ino = netns_filter;
    timespec tick{};
    clock_getres(CLOCK_MONOTONIC_COARSE, &tick);  // one jiffy
    skel->bpf->rodata->ns_per_jiffy = static_cast<uint64_t>(tick.tv_sec) * 1000000000ull + tick.tv_nsec;
    skel->bpf->bss->seeding = 1;  // until end_seeding
    if (int err = depgraph_bpf__load(skel->bpf.get()); err) return load_error("failed to load the BPF programs", err);
    if (int err = depgraph_bpf__attach(skel->bpf.get()); err) {
        return load_error("failed to attach to the tcp tracepoints", err);
    }
    void* slots = ::mmap(nullptr, Skeleton::kSlotsBytes, PROT_READ, MAP_SHARED, bpf_map__fd(skel->bpf->maps.sock_slots), 0);
    if (slots == MAP_FAILED) return errno_error("failed to map the socket slots", errno);
    skel->slots = static_cast<const dg_sock_slot*>(slots);
    return Tracer(std::move(skel));
}

Result<std::vector<EdgeSample>> Tracer::drain() {
    auto* maps = &skel_->bpf->maps;
    bpf_map* full = active_ == 0 ? maps->edges_a : maps->edges_b;
    bpf_map* empty = active_ == 0 ? maps->edges_b : maps->edges_a;
    bpf_map* full_cache = active_ == 0 ? maps->edge_cache_a : maps->edge_cache_b;
    bpf_map* empty_cache = active_ == 0 ? maps->edge_cache_b : maps->edge_cache_a;
    // Each switch returns only after running programs finish. A program
    // between the two writes to the new map and still the old cache, and its
    // evictions go to the new map: after both, nothing writes to `full` or
    // `full_cache`, and every count is in exactly one place.
    uint32_t zero = 0;
    for (auto [outer, inner] : {std::pair{maps->edge_maps, empty}, {maps->cache_maps, empty_cache}}) {
        int fd = bpf_map__fd(inner);
        if (bpf_map_update_elem(bpf_map__fd(outer), &zero, &fd, BPF_ANY) != 0) {
            return errno_error("failed to switch the edge maps", errno);
        }
    }
    active_ = 1 - active_;
    // Only now, after the switch has waited for running programs, can no
    // program that still saw `seeding` set leave another closed cookie behind.
    if (closed_while_seeding_left_) {
        if (auto s = forget_closed_while_seeding(); !s) return s.error();
    }

    // Per-CPU maps: each entry comes back as one value per possible CPU, summed here.
    int cpus = libbpf_num_possible_cpus();
    if (cpus <= 0) return errno_error("failed to count CPUs", -cpus);
    std::vector<EdgeSample> samples;
    std::vector<dg_edge_cache_entry> entries(static_cast<size_t>(cpus));
    const std::vector<dg_edge_cache_entry> cleared(static_cast<size_t>(cpus));
    for (uint32_t i = 0; i < DG_EDGE_CACHE_SLOTS; i++) {
        if (bpf_map_lookup_elem(bpf_map__fd(full_cache), &i, entries.data()) != 0 ||
            bpf_map_update_elem(bpf_map__fd(full_cache), &i, cleared.data(), BPF_ANY) != 0) {
            return errno_error("failed to drain the edge cache", errno);
        }
        for (const auto& e : entries) {
            if (e.used) samples.push_back(EdgeSample{e.key, e.counters});
        }
    }
    constexpr uint32_t kChunk = 1024;
    std::vector<dg_edge_key> keys(kChunk);
    std::vector<dg_edge_counters> values(kChunk * static_cast<size_t>(cpus));
    uint32_t in_token = 0, out_token = 0;
    bool first = true;
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    for (;;) {
        uint32_t count = kChunk;
        int err = bpf_map_lookup_and_delete_batch(bpf_map__fd(full), first ? nullptr : &in_token, &out_token,
                                                  keys.data(), values.data(), &count, &opts);
        // At the end of the map the kernel says ENOENT together with what it did read.
        if (err && errno != ENOENT) return errno_error("failed to drain the edge map", errno);
        for (uint32_t i = 0; i < count; i++) {
            EdgeSample sample{keys[i], {}};
            for (int cpu = 0; cpu < cpus; cpu++) {
                sample.counters += values[i * static_cast<size_t>(cpus) + static_cast<size_t>(cpu)];
            }
            samples.push_back(sample);
        }
        if (err) break;
        in_token = out_token;
        first = false;
    }
    return samples;
}

Result<LossCounters> Tracer::losses() const {
    int cpus = libbpf_num_possible_cpus();
    if (cpus <= 0) return errno_error("failed to count CPUs", -cpus);
    LossCounters totals{};
    std::vector<uint64_t> per_cpu(static_cast<size_t>(cpus));
    for (uint32_t i = 0; i < DG_LOSS_COUNT; i++) {
        if (bpf_map_lookup_elem(bpf_map__fd(skel_->bpf->maps.losses), &i, per_cpu.data()) != 0) {
            return errno_error("failed to read the loss counters", errno);
        }
        for (uint64_t n : per_cpu) totals[i] += n;
    }
    bpf_prog_info info{};
    uint32_t length = sizeof info;
    if (bpf_obj_get_info_by_fd(bpf_program__fd(skel_->bpf->progs.inet_sock_set_state), &info, &length) != 0) {
        return errno_error("failed to read the program's skipped runs", errno);
    }
    totals[DG_LOSS_SKIPPED_NESTED] = info.recursion_misses;
    return totals;
}

Result<std::vector<std::pair<dg_edge_key, int64_t>>> Tracer::open_connections() const {
    std::map<dg_edge_key, int64_t, EdgeKeyLess> per_edge;
    auto note = [&](const dg_sock_info& info) {
        if (info.state == DG_SOCK_OPEN) per_edge[info.edge]++;
    };
    for (size_t i = 0; i < DG_SOCK_SLOTS; i++) {
        if (skel_->slots[i].sk != 0) note(skel_->slots[i].info);
    }
    auto hashed = for_each_value<uint64_t, dg_sock_info>(bpf_map__fd(skel_->bpf->maps.socks), "socket map", note);
    if (!hashed) return hashed.error();
    std::vector<std::pair<dg_edge_key, int64_t>> out(per_edge.begin(), per_edge.end());
    return out;
}

Status Tracer::seed_listener(const dg_listener_key& key, const dg_listener& listener) {
    if (bpf_map_update_elem(bpf_map__fd(skel_->bpf->maps.listeners), &key, &listener, BPF_NOEXIST) != 0 &&
        errno != EEXIST) {
        return errno_error("failed to record a listener", errno);
    }
    const uint8_t owns = 1;
    if (bpf_map_update_elem(bpf_map__fd(skel_->bpf->maps.listener_owners), &listener.tgid, &owns, BPF_ANY) != 0) {
        return errno_error("failed to record a listener's owner", errno);
    }
    return ok_status();
}

Status Tracer::note_traced_sockets() {
    // A slot is chosen by the socket's kernel address, which sock_diag does
    // not report: read them all.
    traced_cookies_.clear();
    for (size_t i = 0; i < DG_SOCK_SLOTS; i++) {
        if (skel_->slots[i].sk != 0) traced_cookies_.insert(skel_->slots[i].cookie);
    }
    return ok_status();
}

void Tracer::end_seeding() {
    skel_->bpf->bss->seeding = 0;
    traced_cookies_ = {};
    closed_while_seeding_left_ = true;
}

Status Tracer::forget_closed_while_seeding() {
    int fd = bpf_map__fd(skel_->bpf->maps.socks);
    std::vector<uint64_t> closed;
    uint64_t cookie = 0;
    dg_sock_info info{};
    for (bool first = true; bpf_map_get_next_key(fd, first ? nullptr : &cookie, &cookie) == 0; first = false) {
        if (bpf_map_lookup_elem(fd, &cookie, &info) == 0 && info.state == DG_SOCK_CLOSED) closed.push_back(cookie);
    }
    if (errno != ENOENT) return errno_error("failed to read the socket map", errno);
    for (uint64_t c : closed) {
        if (bpf_map_delete_elem(fd, &c) != 0 && errno != ENOENT) {
            return errno_error("failed to clear the socket map", errno);
        }
    }
    closed_while_seeding_left_ = false;
    return ok_status();
}

Result<bool> Tracer::seed_socket(uint64_t cookie, const dg_sock_info& info) {
    // The programs put a socket they saw open in its slot, or in the hash when
    // the slot was taken; look in both. A socket that closed since the dump
    // has left its cookie in the hash (see note_closed_while_seeding).
    if (traced_cookies_.count(cookie) != 0) return false;
    if (bpf_map_update_elem(bpf_map__fd(skel_->bpf->maps.socks), &cookie, &info, BPF_NOEXIST) == 0) return true;
    if (errno == EEXIST) return false;
    return errno_error("failed to record an open connection", errno);
}

}  // namespace depgraph
