#include "tier/fork_watch.h"

#include <pthread.h>
#include <sys/socket.h>

#include <cerrno>
#include <thread>

namespace emp::tier {

void start_fork_watch(Pool& pool, UniqueFd socket, std::unique_ptr<ChildShare> share) {
  auto watched = std::make_shared<std::pair<UniqueFd, std::unique_ptr<ChildShare>>>(std::move(socket), std::move(share));
  std::thread thread([&pool, watched] {
    pthread_setname_np(pthread_self(), "emp-fork-watch");
    char byte;
    while (true) {
      ssize_t n = ::recv(watched->first.get(), &byte, 1, 0);
      if (n == 0 || (n < 0 && errno != EINTR)) break;  // every holder of the child's end is gone
    }
    pool.end_child(*watched->second);
  });
  thread.detach();
}

}  // namespace emp::tier
