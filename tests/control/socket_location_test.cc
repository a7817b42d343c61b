// Socket location rules: private directories, candidate directories, stale sockets.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "control/socket_location.h"

namespace emp::control {
namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char name[] = "/tmp/emp-loc-test-XXXXXX";
    path = ::mkdtemp(name);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

void make_socket_file(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un address {};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0) << std::strerror(errno);
  ::close(fd);
}

pid_t dead_pid() {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  ::waitpid(pid, nullptr, 0);
  return pid;
}

TEST(SocketLocation, DefaultDirectoryUsesXdgRuntimeDirWhenWritable) {
  TempDir dir;
  EXPECT_EQ(default_socket_directory(1234, dir.path.c_str()), dir.path + "/emp");
  EXPECT_EQ(default_socket_directory(1234, nullptr), "/tmp/emp-1234");
  EXPECT_EQ(default_socket_directory(1234, ""), "/tmp/emp-1234");
  EXPECT_EQ(default_socket_directory(1234, "/nonexistent/run"), "/tmp/emp-1234");
}

TEST(SocketLocation, PrivateDirectoryIsCreated0700AndCheckedAfterwards) {
  TempDir dir;
  std::string path = dir.path + "/emp";
  ensure_private_directory(path, ::geteuid());
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ensure_private_directory(path, ::geteuid());  // existing and fine

  ::chmod(path.c_str(), 0755);
  EXPECT_THROW(ensure_private_directory(path, ::geteuid()), std::runtime_error);
  EXPECT_NE(check_private_directory(path, ::geteuid()).find("0755"), std::string::npos);
  ::chmod(path.c_str(), 0700);
  EXPECT_NE(check_private_directory(path, ::geteuid() + 1).find("owned by"), std::string::npos);

  std::string link = dir.path + "/link";
  ASSERT_EQ(::symlink(path.c_str(), link.c_str()), 0);
  EXPECT_THROW(ensure_private_directory(link, ::geteuid()), std::runtime_error);
  std::string file = dir.path + "/file";
  ::close(::open(file.c_str(), O_CREAT | O_WRONLY, 0600));
  EXPECT_THROW(ensure_private_directory(file, ::geteuid()), std::runtime_error);
}

TEST(SocketLocation, SocketNames) {
  EXPECT_EQ(socket_path("/tmp/emp-0", 42), "/tmp/emp-0/42.sock");
  EXPECT_EQ(pid_of_socket_name("42.sock"), 42);
  for (const char* bad : {"x.sock", ".sock", "42.sockx", "42", "0.sock", "-1.sock", "99999999999.sock"})
    EXPECT_FALSE(pid_of_socket_name(bad)) << bad;
}

TEST(SocketLocation, RootScansEveryUsersDirectories) {
  TempDir tmp, run;
  ::mkdir((tmp.path + "/emp-1000").c_str(), 0700);
  ::mkdir((tmp.path + "/emp-x").c_str(), 0700);
  ::mkdir((run.path + "/1001").c_str(), 0700);
  auto dirs = candidate_directories(0, "/run/user/0", tmp.path, run.path);
  auto has = [&](const std::string& d) { return std::find(dirs.begin(), dirs.end(), d) != dirs.end(); };
  EXPECT_TRUE(has("/run/user/0/emp"));
  EXPECT_TRUE(has(tmp.path + "/emp-0"));
  EXPECT_TRUE(has(tmp.path + "/emp-1000"));
  EXPECT_TRUE(has(run.path + "/1001/emp"));
  EXPECT_FALSE(has(tmp.path + "/emp-x"));
  auto user_dirs = candidate_directories(1000, nullptr, tmp.path, run.path);
  EXPECT_EQ(user_dirs, (std::vector<std::string>{run.path + "/1000/emp", tmp.path + "/emp-1000"}));
}

TEST(SocketLocation, StaleSocketsOfDeadPidsAreRemovedAndSkipped) {
  TempDir dir;
  ::chmod(dir.path.c_str(), 0700);
  pid_t dead = dead_pid();
  std::string stale = socket_path(dir.path, dead);
  std::string live = socket_path(dir.path, ::getpid());
  make_socket_file(stale);
  make_socket_file(live);
  ::close(::open((dir.path + "/notes.txt").c_str(), O_CREAT | O_WRONLY, 0600));
  auto found = list_sockets({dir.path});
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].pid, ::getpid());
  EXPECT_NE(::access(stale.c_str(), F_OK), 0) << "stale socket not removed";
  EXPECT_EQ(find_socket(::getpid(), {"/nonexistent", dir.path}), live);
  EXPECT_FALSE(find_socket(dead, {dir.path}));
}

}  // namespace
}  // namespace emp::control
