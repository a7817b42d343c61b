#include "core/stats.h"

#include <cstdio>

#include "common/size_parse.h"

namespace emp::core {
namespace {

// Tier names hold paths and host names: escape them for JSON.
std::string json_escaped(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char escape[8];
      std::snprintf(escape, sizeof escape, "\\u%04x", c);
      out += escape;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

template <typename Names, typename Snapshots>
std::string stages_json(const Names& names, const Snapshots& stages) {
  std::string json = "{";
  for (size_t i = 0; i < names.size(); ++i) {
    char entry[192];
    std::snprintf(entry, sizeof entry, "%s\"%s\":{\"count\":%llu,\"mean_us\":%.2f,\"p50_us\":%.2f,\"p99_us\":%.2f}",
                  i ? "," : "", names[i], (unsigned long long)stages[i].total(), stages[i].mean_ns() / 1e3,
                  stages[i].percentile_ns(0.50) / 1e3, stages[i].percentile_ns(0.99) / 1e3);
    json += entry;
  }
  return json + "}";
}

template <typename Names, typename Snapshots>
std::string stages_text(const Names& names, const Snapshots& stages) {
  std::string text;
  for (size_t i = 0; i < names.size(); ++i) {
    char entry[128];
    std::snprintf(entry, sizeof entry, "%s%s %.1f/%.1f/%.1f", i ? ", " : "", names[i], stages[i].mean_ns() / 1e3,
                  stages[i].percentile_ns(0.50) / 1e3, stages[i].percentile_ns(0.99) / 1e3);
    text += entry;
  }
  return text;
}

}  // namespace

std::string EngineStats::fault_stages_json() const { return stages_json(kFaultStageNames, fault_stages); }
std::string EngineStats::evict_stages_json() const { return stages_json(kEvictStageNames, evict_stages); }
std::string EngineStats::fault_stages_text() const { return stages_text(kFaultStageNames, fault_stages); }
std::string EngineStats::evict_stages_text() const { return stages_text(kEvictStageNames, evict_stages); }

std::string EngineStats::to_json() const {
  char head[1024];
  std::snprintf(head, sizeof head,
                "{\"faults\":%llu,\"faults_zero\":%llu,\"faults_fetch\":%llu,\"faults_local\":%llu,"
                "\"faults_write_protect\":%llu,\"prefetched\":%llu,\"fault_p50_us\":%.1f,\"fault_p99_us\":%.1f,"
                "\"fetch_p50_us\":%.1f,\"fetch_p99_us\":%.1f,"
                "\"evictions_clean\":%llu,\"evictions_dirty\":%llu,\"evictions_direct\":%llu,\"io_errors\":%llu,"
                "\"resident_bytes\":%llu,\"budget_bytes\":%llu,\"peak_resident_bytes\":%llu,"
                "\"managed_bytes\":%llu,\"metadata_bytes\":%llu,\"regions\":%llu,\"deferred_bytes\":%llu,\"takeovers\":%llu,"
                "\"pool_capacity\":%llu,\"pool_reserved\":%llu,\"bytes_read\":%llu,\"bytes_written\":%llu,\"tiers\":[",
                (unsigned long long)faults(), (unsigned long long)faults_zero, (unsigned long long)faults_fetch,
                (unsigned long long)faults_local, (unsigned long long)faults_write_protect,
                (unsigned long long)prefetched,
                fault_latency.percentile_ns(0.50) / 1e3, fault_latency.percentile_ns(0.99) / 1e3,
                fetch_latency.percentile_ns(0.50) / 1e3, fetch_latency.percentile_ns(0.99) / 1e3,
                (unsigned long long)evictions_clean, (unsigned long long)evictions_dirty,
                (unsigned long long)evictions_direct, (unsigned long long)io_errors,
                (unsigned long long)resident_bytes, (unsigned long long)budget_bytes,
                (unsigned long long)peak_resident_bytes, (unsigned long long)managed_bytes,
                (unsigned long long)metadata_bytes, (unsigned long long)regions, (unsigned long long)deferred_bytes,
                (unsigned long long)takeovers, (unsigned long long)pool_capacity,
                (unsigned long long)pool_reserved, (unsigned long long)bytes_read, (unsigned long long)bytes_written);
  std::string json = head;
  for (size_t i = 0; i < tiers.size(); ++i) {
    const TierStats& t = tiers[i];
    json += i ? ",{" : "{";
    json += "\"name\":\"" + json_escaped(t.name) + "\",\"health\":\"" + json_escaped(t.health) +
            "\",\"capacity\":" + std::to_string(t.capacity) + ",\"bytes_read\":" + std::to_string(t.counters.bytes_read) +
            ",\"bytes_written\":" + std::to_string(t.counters.bytes_written) +
            ",\"read_ops\":" + std::to_string(t.counters.read_ops) + ",\"write_ops\":" + std::to_string(t.counters.write_ops) +
            ",\"errors\":" + std::to_string(t.counters.errors) + "}";
  }
  json += "],\"paths\":{\"unmap\":\"" + json_escaped(unmap_path) + "\",\"write_protect\":\"" +
          json_escaped(write_protect_path) + "\"}";
  // The latency histograms, non-empty buckets only ([upper bound in ns, count]), for
  // `emp metrics` (Prometheus histograms).
  auto histogram_json = [](const LatencyHistogram::Snapshot& h) {
    std::string out = "{\"sum_ns\":" + std::to_string(h.sum_ns) + ",\"buckets\":[";
    bool first = true;
    for (int i = 0; i < LatencyHistogram::kBuckets; ++i) {
      if (!h.counts[i]) continue;
      out += (first ? "[" : ",[") + std::to_string(LatencyHistogram::bucket_upper_ns(i)) + "," +
             std::to_string(h.counts[i]) + "]";
      first = false;
    }
    return out + "]}";
  };
  json += ",\"fault_latency_histogram\":" + histogram_json(fault_latency) +
          ",\"fetch_latency_histogram\":" + histogram_json(fetch_latency);
  json += ",\"write_protect_calls\":" + std::to_string(write_protect_calls) +
          ",\"drop_calls\":" + std::to_string(drop_calls) + ",\"fault_stages\":" + fault_stages_json() + ",\"evict_stages\":" + evict_stages_json() + "}";
  return json;
}

std::string EngineStats::to_text() const {
  char text[2048];
  std::snprintf(text, sizeof text,
                "faults            %llu (zero %llu, fetch %llu, local %llu), write-protect %llu, prefetched %llu\n"
                "fault latency     p50 %.1f us, p99 %.1f us (fetch: p50 %.1f us, p99 %.1f us)\n"
                "evictions         clean %llu, dirty %llu (on fault path %llu)\n"
                "resident          %s of %s budget (peak %s)\n"
                "managed           %s in %llu regions, metadata %s; deferred (kernel-served) %s, taken over %llu\n"
                "second tier       %s read, %s written, pool %s reserved of %s, io errors %llu\n",
                (unsigned long long)faults(), (unsigned long long)faults_zero, (unsigned long long)faults_fetch,
                (unsigned long long)faults_local, (unsigned long long)faults_write_protect,
                (unsigned long long)prefetched,
                fault_latency.percentile_ns(0.50) / 1e3, fault_latency.percentile_ns(0.99) / 1e3,
                fetch_latency.percentile_ns(0.50) / 1e3, fetch_latency.percentile_ns(0.99) / 1e3,
                (unsigned long long)evictions_clean, (unsigned long long)evictions_dirty,
                (unsigned long long)evictions_direct, format_size(resident_bytes).c_str(),
                format_size(budget_bytes).c_str(), format_size(peak_resident_bytes).c_str(),
                format_size(managed_bytes).c_str(), (unsigned long long)regions, format_size(metadata_bytes).c_str(),
                format_size(deferred_bytes).c_str(), (unsigned long long)takeovers, format_size(bytes_read).c_str(), format_size(bytes_written).c_str(), format_size(pool_reserved).c_str(),
                format_size(pool_capacity).c_str(), (unsigned long long)io_errors);
  std::string out = text;
  out += "fault stages      " + fault_stages_text() + " (us mean/p50/p99, fetching faults)\n";
  out += "eviction stages   " + evict_stages_text() + " (us mean/p50/p99, per batch)\n";
  out += "page-table calls  " + std::to_string(write_protect_calls) + " write-protect, " + std::to_string(drop_calls) +
         " unmap (eviction; one TLB shootdown each); paths: unmap " + unmap_path + ", freeze " + write_protect_path + "\n";
  for (const auto& tier : tiers)
    out += "  tier " + tier.name + ": " + tier.health + ", " + format_size(tier.counters.bytes_read) + " read, " +
           format_size(tier.counters.bytes_written) + " written\n";
  return out;
}

}  // namespace emp::core
