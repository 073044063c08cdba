#include "agent/process_table.hpp"

#include <sys/stat.h>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

namespace depgraph {

namespace fs = std::filesystem;

namespace {

std::optional<uint64_t> parse_decimal(std::string_view text) {
    uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size() || text.empty()) return std::nullopt;
    return value;
}

// /proc files vanish with their process; nullopt then, never an error.
std::optional<std::string> read_proc_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) return std::nullopt;
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) return std::nullopt;
    return std::move(text).str();
}

std::vector<std::string_view> split_lines(std::string_view text) {
    std::vector<std::string_view> lines;
    while (!text.empty()) {
        size_t end = text.find('\n');
        lines.push_back(text.substr(0, end));
        if (end == std::string_view::npos) break;
        text.remove_prefix(end + 1);
    }
    return lines;
}

std::vector<std::string_view> split_fields(std::string_view line) {
    std::vector<std::string_view> fields;
    while (!line.empty()) {
        size_t start = line.find_first_not_of(' ');
        if (start == std::string_view::npos) break;
        line.remove_prefix(start);
        size_t end = line.find(' ');
        fields.push_back(line.substr(0, end));
        if (end == std::string_view::npos) break;
        line.remove_prefix(end);
    }
    return fields;
}

// mountinfo writes space, tab, newline and backslash as \ooo.
std::string decode_octal_escapes(std::string_view text) {
    std::string out;
    for (size_t i = 0; i < text.size(); ++i) {
        auto is_octal = [&](size_t j) { return j < text.size() && text[j] >= '0' && text[j] <= '7'; };
        if (text[i] == '\\' && is_octal(i + 1) && is_octal(i + 2) && is_octal(i + 3)) {
            out.push_back(static_cast<char>((text[i + 1] - '0') * 64 + (text[i + 2] - '0') * 8 + (text[i + 3] - '0')));
            i += 3;
        } else {
            out.push_back(text[i]);
        }
    }
    return out;
}

std::optional<ProcessIdentity> identity_of(pid_t pid, CgroupPaths& cgroups) {
    const std::string dir = "/proc/" + std::to_string(pid);
    auto comm = read_proc_file(dir + "/comm");
    if (!comm) return std::nullopt;
    if (!comm->empty() && comm->back() == '\n') comm->pop_back();

    ProcessIdentity id;
    id.pid = pid;
    id.comm = std::move(*comm);
    if (auto cgroup_text = read_proc_file(dir + "/cgroup")) {
        if (auto path = parse_cgroup_v2_path(*cgroup_text)) {
            id.cgroup = std::move(*path);
            id.cgroup_id = cgroups.id_of(id.cgroup);
        }
    }
    return id;
}

std::optional<uint64_t> inode_of(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return std::nullopt;
    return static_cast<uint64_t>(st.st_ino);
}

}  // namespace

std::vector<uint64_t> socket_inodes_of(pid_t pid) {
    std::vector<uint64_t> inodes;
    std::error_code ec;
    fs::directory_iterator it(fs::path("/proc") / std::to_string(pid) / "fd", ec);
    for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
        std::error_code link_ec;
        fs::path target = fs::read_symlink(it->path(), link_ec);
        if (link_ec) continue;  // the fd was closed meanwhile
        if (auto inode = parse_socket_link(target.native())) inodes.push_back(*inode);
    }
    return inodes;
}

std::vector<pid_t> list_processes() {
    std::vector<pid_t> pids;
    std::error_code ec;
    fs::directory_iterator it("/proc", ec);
    for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
        if (auto pid = parse_decimal(it->path().filename().native())) pids.push_back(static_cast<pid_t>(*pid));
    }
    return pids;
}

std::unordered_map<uint64_t, ProcessIdentity> socket_owners() {
    std::unordered_map<uint64_t, ProcessIdentity> owners;
    CgroupPaths cgroups;
    for (pid_t pid : list_processes()) {
        std::vector<uint64_t> inodes = socket_inodes_of(pid);
        if (inodes.empty()) continue;
        auto identity = identity_of(pid, cgroups);
        if (!identity) continue;
        // A socket shared across fork() keeps its first owner: /proc lists
        // pids in ascending order, so usually the parent.
        for (uint64_t inode : inodes) owners.try_emplace(inode, *identity);
    }
    return owners;
}

const std::string& CgroupPaths::mount() {
    if (!mount_known_) {
        mount_known_ = true;
        if (auto text = read_proc_file("/proc/self/mountinfo")) mount_ = parse_cgroup2_mount(*text).value_or("");
    }
    return mount_;
}

uint64_t CgroupPaths::id_of(const std::string& path) {
    if (mount().empty()) return 0;
    return inode_of(mount() + path).value_or(0);
}

std::string CgroupPaths::path_of(uint64_t cgroup_id) {
    if (auto it = cache_.find(cgroup_id); it != cache_.end()) return it->second;
    if (mount().empty()) return "";

    // Walk the whole tree once and remember every directory: the next
    // lookups are then hits. cgroup ids are not reused, so an id the walk
    // did not find belongs to a removed cgroup and its miss can be cached.
    std::vector<std::pair<std::string, std::string>> pending{{mount(), ""}};  // (absolute, relative)
    while (!pending.empty()) {
        auto [abs, rel] = std::move(pending.back());
        pending.pop_back();
        auto inode = inode_of(abs);
        if (!inode) continue;  // removed during the walk
        cache_.try_emplace(*inode, rel);

        std::error_code ec;
        fs::directory_iterator it(abs, fs::directory_options::skip_permission_denied, ec);
        for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
            std::error_code type_ec;
            if (!it->is_directory(type_ec) || it->is_symlink(type_ec)) continue;
            std::string name = it->path().filename().native();
            pending.emplace_back(abs + "/" + name, rel + "/" + name);
        }
    }
    return cache_.try_emplace(cgroup_id, "").first->second;
}

std::optional<uint64_t> parse_socket_link(std::string_view link) {
    constexpr std::string_view kPrefix = "socket:[";
    if (link.size() <= kPrefix.size() + 1 || link.substr(0, kPrefix.size()) != kPrefix || link.back() != ']') {
        return std::nullopt;
    }
    return parse_decimal(link.substr(kPrefix.size(), link.size() - kPrefix.size() - 1));
}

std::optional<std::string> parse_cgroup_v2_path(std::string_view proc_cgroup) {
    for (std::string_view line : split_lines(proc_cgroup)) {
        if (line.substr(0, 3) != "0::") continue;
        std::string_view path = line.substr(3);
        if (path == "/") return std::string();
        return std::string(path);
    }
    return std::nullopt;
}

std::optional<std::string> parse_cgroup2_mount(std::string_view mountinfo) {
    for (std::string_view line : split_lines(mountinfo)) {
        // ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS
        std::vector<std::string_view> fields = split_fields(line);
        if (fields.size() < 5) continue;
        for (size_t i = 5; i + 1 < fields.size(); ++i) {
            if (fields[i] != "-") continue;
            if (fields[i + 1] == "cgroup2") return decode_octal_escapes(fields[4]);
            break;
        }
    }
    return std::nullopt;
}

}  // namespace depgraph
