// Replays fuzz corpora without libFuzzer: runs every file named on the command line
// (or found in a directory named there) through LLVMFuzzerTestOneInput once. Built with
// the sanitizers by the ctest `fuzz_replay_*` tests, so each seed and each input a
// fuzzing run kept is re-checked in every build.
#include <dirent.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

int replay_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  int count = 0;
  for (int i = 1; i < argc; ++i) {
    struct stat info {};
    if (::stat(argv[i], &info) != 0) {
      std::fprintf(stderr, "replay: cannot read %s\n", argv[i]);
      return 2;
    }
    if (S_ISDIR(info.st_mode)) {
      DIR* dir = ::opendir(argv[i]);
      while (dirent* entry = dir ? ::readdir(dir) : nullptr)
        if (entry->d_name[0] != '.') count += replay_file(std::string(argv[i]) + "/" + entry->d_name);
      if (dir) ::closedir(dir);
    } else {
      count += replay_file(argv[i]);
    }
  }
  std::printf("replayed %d inputs\n", count);
  return count > 0 ? 0 : 1;
}
