// emp-qemu's command line: the guest-RAM size QEMU will allocate, what passes through to
// QEMU unchanged, and the arguments refused with a message naming them.
#include <gtest/gtest.h>

#include "qemu/qemu_args.h"

namespace emp::qemu {
namespace {

constexpr uint64_t kMiB = 1ULL << 20;
const std::string kPath = "dram:256|127.0.0.1:4096:19675";

QemuLaunch parse(std::vector<std::string> args, const std::string& env_qemu = "") {
  args.push_back("--mem-path");
  args.push_back(kPath);
  return parse_qemu_command_line(args, env_qemu);
}

std::string error_of(const std::vector<std::string>& args) {
  try {
    (void)parse_qemu_command_line(args, "");
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(EmpQemuArgs, GuestRamSizeFollowsQemusRules) {
  EXPECT_EQ(parse({"-m", "1G"}).guest_ram_bytes, 1024 * kMiB);
  EXPECT_EQ(parse({"-m", "2048"}).guest_ram_bytes, 2048 * kMiB);  // a bare number is MiB
  EXPECT_EQ(parse({"-m", "size=3G,slots=4,maxmem=8G"}).guest_ram_bytes, 3072 * kMiB);
  EXPECT_EQ(parse({}).guest_ram_bytes, 128 * kMiB);  // QEMU's default
  EXPECT_EQ(parse({"-m", "1001K"}).guest_ram_bytes, 1032192u);  // rounded up to 8 KiB
}

TEST(EmpQemuArgs, QemuArgumentsPassThroughWithMemMergeOff) {
  QemuLaunch launch = parse({"-m", "1G", "-smp", "2", "-accel", "tcg", "-nographic"});
  std::vector<std::string> expected = {"-m", "1G", "-smp", "2", "-accel", "tcg", "-nographic", "-machine", "mem-merge=off"};
  EXPECT_EQ(launch.qemu_args, expected);
  EXPECT_EQ(launch.mem_path, kPath);
  EXPECT_EQ(launch.qemu, "qemu-system-x86_64");
  EXPECT_EQ(parse({}, "/opt/qemu").qemu, "/opt/qemu");
  EXPECT_EQ(parse({"--qemu", "/usr/local/bin/qemu"}, "/opt/qemu").qemu, "/usr/local/bin/qemu");
  EXPECT_EQ(parse_qemu_command_line({"--mem-path=" + kPath, "--dry-run"}, "").dry_run, true);
}

TEST(EmpQemuArgs, TakesAMemfdBackendAndItsSize) {
  auto launch = parse({"-object", "memory-backend-memfd,id=m,size=1G,share=on", "-machine", "memory-backend=m"});
  EXPECT_EQ(launch.guest_ram_bytes, 1ULL << 30);  // no -m: the backend's size
  EXPECT_EQ(parse({"-m", "512M", "-object", "memory-backend-memfd,id=m,size=512M"}).guest_ram_bytes, 512ULL << 20);
}

TEST(EmpQemuArgs, RefusesWhatCannotWorkOnEmpRam) {
  EXPECT_NE(error_of({"-m", "1G"}).find("--mem-path"), std::string::npos);
  EXPECT_NE(error_of({"-m", "1G", "-mem-prealloc", "--mem-path", kPath}).find("-mem-prealloc"), std::string::npos);
  EXPECT_NE(error_of({"-object", "memory-backend-ram,id=m,size=1G,prealloc=on", "--mem-path", kPath}).find("prealloc"),
            std::string::npos);
  EXPECT_NE(error_of({"-object", "memory-backend-file,id=m,size=1G,mem-path=/tmp/x", "--mem-path", kPath})
                .find("memory-backend-file"),
            std::string::npos);
  EXPECT_NE(error_of({"-object", "memory-backend-memfd,id=m,size=1G,hugetlb=on", "--mem-path", kPath}).find("hugetlb"),
            std::string::npos);
  EXPECT_NE(error_of({"-object", "memory-backend-memfd,id=m,size=1G,share=off", "--mem-path", kPath}).find("share=off"),
            std::string::npos);
  EXPECT_NE(error_of({"-object", "memory-backend-ram,id=m,size=lots", "--mem-path", kPath}).find("lots"),
            std::string::npos);
  EXPECT_NE(error_of({"-mem-path", "/dev/hugepages", "--mem-path", kPath}).find("-mem-path"), std::string::npos);
  EXPECT_NE(error_of({"-m", "8G", "--mem-path", kPath}).find("more than local DRAM"), std::string::npos);
  EXPECT_NE(error_of({"-m", "lots", "--mem-path", kPath}).find("lots"), std::string::npos);
  EXPECT_NE(error_of({"-m", "1G", "--mem-path", "dram:256"}).find("no second tier"), std::string::npos);
  EXPECT_NE(error_of({"-m", "1G", "--mem-path", "dram:256|bogus"}).find("bogus"), std::string::npos);
  EXPECT_NE(error_of({"-m"}).find("-m needs a value"), std::string::npos);
}

}  // namespace
}  // namespace emp::qemu
