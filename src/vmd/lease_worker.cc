#include "vmd/lease_worker.h"

#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace emp::vmd {

LeaseWorker::LeaseWorker(PoolMemory& pool) : pool_(pool) {
  event_fd_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!event_fd_.valid()) throw std::system_error(errno, std::generic_category(), "eventfd");
  thread_ = std::thread([this] { run(); });
}

LeaseWorker::~LeaseWorker() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void LeaseWorker::create(uint64_t token, uint64_t offset, uint64_t size) {
  auto job = [this, token, offset, size] {
    Completion done;
    done.token = token;
    pool_.lend(offset, size);
    try {
      done.memory = LeaseMemory::create(size);
      if (pool_.locked()) {
        std::weak_ptr<LeaseMemory> weak = done.memory;
        std::lock_guard lock(mu_);
        background_.push_back([weak] {
          if (auto memory = weak.lock()) memory->lock();
        });
      }
    } catch (const std::exception& error) {
      done.error = error.what();
      pool_.take_back(offset, size);
    }
    {
      std::lock_guard lock(mu_);
      completed_.push_back(std::move(done));
    }
    uint64_t one = 1;
    (void)!::write(event_fd_.get(), &one, sizeof one);
  };
  std::lock_guard lock(mu_);
  jobs_.push_back(std::move(job));
  cv_.notify_one();
}

void LeaseWorker::retire(std::shared_ptr<LeaseMemory> memory, uint64_t offset, uint64_t size) {
  auto job = [this, memory = std::move(memory), offset, size]() mutable {
    memory.reset();  // frees the file once the data planes let go of it too
    pool_.take_back(offset, size);
  };
  std::lock_guard lock(mu_);
  jobs_.push_back(std::move(job));
  cv_.notify_one();
}

std::vector<LeaseWorker::Completion> LeaseWorker::take_completed() {
  uint64_t value;
  (void)!::read(event_fd_.get(), &value, sizeof value);
  std::lock_guard lock(mu_);
  return std::exchange(completed_, {});
}

void LeaseWorker::run() noexcept {
  pthread_setname_np(pthread_self(), "vmd-lease");
  while (true) {
    std::function<void()> job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !jobs_.empty() || !background_.empty(); });
      if (!jobs_.empty()) {
        job = std::move(jobs_.front());
        jobs_.pop_front();
      } else if (stopping_) {
        return;  // every creation and retirement done; locking no longer matters
      } else {
        job = std::move(background_.front());
        background_.pop_front();
      }
    }
    job();
  }
}

}  // namespace emp::vmd
