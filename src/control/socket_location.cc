#include "control/socket_location.h"

#include <dirent.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "common/size_parse.h"

namespace emp::control {
namespace {

bool is_writable_directory(const char* path) {
  struct stat st;
  return path && *path && ::stat(path, &st) == 0 && S_ISDIR(st.st_mode) && ::access(path, W_OK | X_OK) == 0;
}

bool pid_alive(pid_t pid) {
  return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM);
}

std::vector<std::string> sorted_entries(const std::string& directory) {
  std::vector<std::string> names;
  DIR* dir = ::opendir(directory.c_str());
  if (!dir) return names;
  while (struct dirent* entry = ::readdir(dir)) {
    std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(std::move(name));
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

void add_unique(std::vector<std::string>& list, std::string item) {
  if (std::find(list.begin(), list.end(), item) == list.end()) list.push_back(std::move(item));
}

}  // namespace

std::string default_socket_directory(uid_t uid, const char* xdg_runtime_dir) {
  if (is_writable_directory(xdg_runtime_dir)) return std::string(xdg_runtime_dir) + "/emp";
  return "/tmp/emp-" + std::to_string(uid);
}

std::string check_private_directory(const std::string& path, uid_t uid) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return std::strerror(errno);
  if (S_ISLNK(st.st_mode)) return "it is a symbolic link";
  if (!S_ISDIR(st.st_mode)) return "it is not a directory";
  if (st.st_uid != uid)
    return "it is owned by uid " + std::to_string(st.st_uid) + ", not by uid " + std::to_string(uid);
  if (st.st_mode & 077) {
    char mode[16];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return std::string("its mode is ") + mode + " (group or others have access; expected 0700)";
  }
  return "";
}

void ensure_private_directory(const std::string& path, uid_t uid) {
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST)
    throw std::runtime_error("cannot create the control socket directory " + path + ": " + std::strerror(errno));
  std::string problem = check_private_directory(path, uid);
  if (!problem.empty()) throw std::runtime_error("refusing the control socket directory " + path + ": " + problem);
}

std::string socket_path(const std::string& directory, pid_t pid) {
  return directory + "/" + std::to_string(pid) + ".sock";
}

std::optional<pid_t> pid_of_socket_name(const std::string& file_name) noexcept {
  constexpr std::string_view kSuffix = ".sock";
  if (file_name.size() <= kSuffix.size() || file_name.compare(file_name.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0)
    return std::nullopt;
  auto pid = parse_uint(std::string_view(file_name).substr(0, file_name.size() - kSuffix.size()));
  if (!pid || *pid == 0 || *pid > 0x3fffffff) return std::nullopt;
  return static_cast<pid_t>(*pid);
}

std::vector<std::string> candidate_directories(uid_t viewer_uid, const char* xdg_runtime_dir, const std::string& tmp_root,
                                               const std::string& run_user_root) {
  std::vector<std::string> dirs;
  if (xdg_runtime_dir && *xdg_runtime_dir) add_unique(dirs, std::string(xdg_runtime_dir) + "/emp");
  add_unique(dirs, run_user_root + "/" + std::to_string(viewer_uid) + "/emp");
  add_unique(dirs, tmp_root + "/emp-" + std::to_string(viewer_uid));
  if (viewer_uid == 0) {
    for (const auto& name : sorted_entries(tmp_root))
      if (name.rfind("emp-", 0) == 0 && parse_uint(std::string_view(name).substr(4))) add_unique(dirs, tmp_root + "/" + name);
    for (const auto& name : sorted_entries(run_user_root))
      if (parse_uint(name)) add_unique(dirs, run_user_root + "/" + name + "/emp");
  }
  return dirs;
}

std::vector<SocketEntry> list_sockets(const std::vector<std::string>& directories) {
  std::vector<SocketEntry> found;
  for (const auto& directory : directories) {
    struct stat dir_stat;
    // Only directories that pass the same rule the servers use (owner-only access).
    if (::lstat(directory.c_str(), &dir_stat) != 0 || !S_ISDIR(dir_stat.st_mode) || (dir_stat.st_mode & 022)) continue;
    for (const auto& name : sorted_entries(directory)) {
      auto pid = pid_of_socket_name(name);
      if (!pid) continue;
      std::string path = directory + "/" + name;
      struct stat st;
      if (::lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
      if (!pid_alive(*pid)) {
        ::unlink(path.c_str());  // stale: best effort (fails harmlessly without permission)
        continue;
      }
      bool seen = std::any_of(found.begin(), found.end(), [&](const SocketEntry& e) { return e.pid == *pid; });
      if (!seen) found.push_back({*pid, path});
    }
  }
  std::sort(found.begin(), found.end(), [](const SocketEntry& a, const SocketEntry& b) { return a.pid < b.pid; });
  return found;
}

std::optional<std::string> find_socket(pid_t pid, const std::vector<std::string>& directories) {
  for (const auto& directory : directories) {
    std::string path = socket_path(directory, pid);
    struct stat st;
    if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) return path;
  }
  return std::nullopt;
}

void remove_stale_sockets(const std::string& directory) noexcept {
  try {
    for (const auto& name : sorted_entries(directory)) {
      auto pid = pid_of_socket_name(name);
      if (pid && !pid_alive(*pid)) ::unlink((directory + "/" + name).c_str());
    }
  } catch (...) {
  }
}

bool peer_allowed(int fd, uid_t our_uid, uid_t* peer_uid) noexcept {
  struct ucred cred {};
  socklen_t length = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0 || length != sizeof cred) {
    if (peer_uid) *peer_uid = static_cast<uid_t>(-1);
    return false;
  }
  if (peer_uid) *peer_uid = cred.uid;
  return cred.uid == our_uid || cred.uid == 0;
}

}  // namespace emp::control
