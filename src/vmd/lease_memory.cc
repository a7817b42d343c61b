#include "vmd/lease_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>

namespace emp::vmd {

std::shared_ptr<LeaseMemory> LeaseMemory::create(uint64_t bytes) {
  auto fail = [&](const char* what) {
    throw std::system_error(errno, std::generic_category(),
                            std::string(what) + " for a lease of " + std::to_string(bytes >> 20) + " MiB");
  };
  std::shared_ptr<LeaseMemory> memory(new LeaseMemory());
  memory->fd_ = UniqueFd(::memfd_create("emp-lease", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!memory->fd_.valid()) fail("memfd_create");
  int fd = memory->fd_.get();
  if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0) fail("ftruncate");
  if (::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) fail("sealing the memory file");
  if (::fallocate(fd, 0, 0, static_cast<off_t>(bytes)) != 0) fail("allocating");
  void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) fail("mapping");
  memory->base_ = static_cast<std::byte*>(base);
  memory->size_ = bytes;
  ::madvise(base, bytes, MADV_DONTFORK);
  return memory;
}

void LeaseMemory::lock() noexcept { (void)::mlock(base_, size_); }  // a failure only allows swap-outs

LeaseMemory::~LeaseMemory() {
  if (!base_) return;
  // Free the pages even if a client keeps its descriptor: it then reads zeros.
  (void)::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(size_));
  ::munmap(base_, size_);
}

}  // namespace emp::vmd
