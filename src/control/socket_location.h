// Where control sockets live and who may open them. Each EMP process serves one unix
// stream socket, `<dir>/<pid>.sock`, where <dir> is `$XDG_RUNTIME_DIR/emp` when that
// variable names a writable directory, else `/tmp/emp-<uid>`. The directory is created
// 0700 and refused when it exists with another owner, as a symlink or with any group or
// other permission; the socket itself is 0600. The server also checks SO_PEERCRED on
// accept: only its own uid and root may talk to it. Discovery (`emp ls`) scans the
// viewer's own directories, and as root every user's (`/tmp/emp-*/`, `/run/user/*/emp/`);
// sockets of dead pids are removed when the viewer may, and ignored otherwise.
//
// Setup/CLI zone: functions that create things throw std::runtime_error with a message
// naming the path; the checks used by the server thread are noexcept. Thread-safe (no
// shared state).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace emp::control {

// The directory a process of `uid` serves its socket from; `xdg_runtime_dir` is the
// value of XDG_RUNTIME_DIR (nullptr or "" when unset).
std::string default_socket_directory(uid_t uid, const char* xdg_runtime_dir);

// "" when `path` is a real directory owned by `uid` with no group/other permissions,
// else the reason it is refused (ENOENT included).
std::string check_private_directory(const std::string& path, uid_t uid);
// Creates `path` (one level) with mode 0700 if missing, then checks it; throws
// std::runtime_error naming the path and the reason.
void ensure_private_directory(const std::string& path, uid_t uid);

std::string socket_path(const std::string& directory, pid_t pid);
// The pid a "<pid>.sock" file name stands for; nullopt for any other name.
std::optional<pid_t> pid_of_socket_name(const std::string& file_name) noexcept;

// Directories a viewer of `viewer_uid` looks in, in order, without duplicates: its own
// ($XDG_RUNTIME_DIR/emp, /run/user/<uid>/emp, /tmp/emp-<uid>) and, for root, every
// user's /tmp/emp-*/ and /run/user/*/emp/. `tmp_root` and `run_user_root` are "/tmp"
// and "/run/user" outside tests.
std::vector<std::string> candidate_directories(uid_t viewer_uid, const char* xdg_runtime_dir,
                                               const std::string& tmp_root = "/tmp",
                                               const std::string& run_user_root = "/run/user");

struct SocketEntry {
  pid_t pid = 0;
  std::string path;
};

// Sockets in `directories` whose pid is alive (one per pid, first directory wins).
// Sockets of dead pids are unlinked when possible (best effort) and skipped.
std::vector<SocketEntry> list_sockets(const std::vector<std::string>& directories);
// The socket of `pid` among `directories`, if any.
std::optional<std::string> find_socket(pid_t pid, const std::vector<std::string>& directories);

// Removes sockets of dead pids from one directory (best effort, never throws).
void remove_stale_sockets(const std::string& directory) noexcept;

// SO_PEERCRED: true when the peer of connected socket `fd` runs as `our_uid` or root.
// *peer_uid receives the peer's uid (or -1 when it cannot be read).
bool peer_allowed(int fd, uid_t our_uid, uid_t* peer_uid) noexcept;

}  // namespace emp::control
