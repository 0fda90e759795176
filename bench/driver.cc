// driver.cc: ptm-bench, the workloads of workloads.c timed by Google Benchmark.
//
// Registers one benchmark per workload and size and leaves the rest to
// Google Benchmark's flags (--benchmark_filter, --benchmark_min_time,
// --benchmark_format=json, --benchmark_out=FILE, --benchmark_list_tests).
// Links no allocator of its own: run it under LD_PRELOAD to measure one
// (bench/compare does, for each allocator in turn).  Every benchmark reports
// wall-clock and process CPU time per iteration, items per second, and the
// process's peak and current RSS (VmHWM, VmRSS in KiB) when it ends; run one
// benchmark per process for the peak to belong to that benchmark alone.

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>

#include "workloads.h"

namespace {

const long kKiB = 1024;
const long kMiB = 1024 * kKiB;

void ReportRss(benchmark::State& state) {
  state.counters["peak_rss_kib"] = static_cast<double>(wl_status_kib("VmHWM"));
  state.counters["rss_kib"] = static_cast<double>(wl_status_kib("VmRSS"));
}

// Registers `name`, whose every iteration calls `work()`, which does
// `items` allocations' worth of work.
template <typename Work>
benchmark::internal::Benchmark* Add(const std::string& name, long items, Work work) {
  // Wall-clock time decides; CPU time is that of the whole process, so that
  // it counts the threads the multi-threaded workloads start.
  return benchmark::RegisterBenchmark(
             name.c_str(),
             [items, work](benchmark::State& state) {
               for (auto _ : state) work();
               state.SetItemsProcessed(state.iterations() * items);
               ReportRss(state);
             })
      ->UseRealTime()
      ->MeasureProcessCPUTime()
      ->Unit(benchmark::kMicrosecond);
}

void RegisterAll() {
  // Pairs, by size class.
  for (long size : {16L, 64L, 256L, 1024L, 4096L, 32768L})
    Add("pair/" + std::to_string(size), 1000, [size] { wl_pairs(1000, size); });

  // Allocate 1000 mixed-size blocks, free them oldest or newest first.
  Add("batch_fifo/1000", 1000, [] { wl_batch(1, 1000, 0); });
  Add("batch_lifo/1000", 1000, [] { wl_batch(1, 1000, 1); });
  // The same with 200000 blocks (about 55 MiB): more than the caches hold,
  // as a program building and dropping a large structure.
  Add("batch_fifo/200000", 200000, [] { wl_batch(1, 200000, 0); });

  Add("calloc/64", 1000, [] { wl_calloc(1000, 64); });
  Add("calloc/4096", 1000, [] { wl_calloc(1000, 4096); });

  // 16 B -> 64 KiB by doubling: 12 reallocs per block.
  Add("realloc_double/16_65536", 100 * 13, [] { wl_realloc_double(100, 16, 64 * kKiB); });
  // 16 B -> 4 KiB by 16 B steps: 255 reallocs per block.
  Add("realloc_step16/4096", 10 * 256, [] { wl_realloc_step(10, 16, 4 * kKiB); });

  Add("memalign/64", 1000, [] { wl_memalign(1000, 64); });
  Add("memalign/4096", 1000, [] { wl_memalign(1000, 4096); });

  // 256 KiB, 512 KiB, 1, 2, 4 MiB, every page written.
  Add("large/256K_4M", 5, [] { wl_large(5, 256 * kKiB, 4 * kMiB); });
  // 16 live blocks of 64 KiB .. 1 MiB replaced at random, pages written.
  Add("large_churn/64K_1M", 16 + 64, [] { wl_large_churn(64, 64 * kKiB, kMiB, 16); });

  // Four threads in a ring passing batches of 256 blocks: 50 batches each.
  Add("mt_prodcons/4", 4 * 50 * 256, [] { wl_prodcons(50, 4, 256); });
  // Four server threads, 1000 slots each, 4 epochs of 20000 replacements.
  Add("mt_larson/4", 4 * 4 * 20000, [] { wl_larson(20000, 4, 1000, 4); });
  // Four threads writing 8-byte blocks one thread allocated together.
  Add("mt_false_share/4", 4 * 2000000L, [] { wl_false_sharing(2000000, 4, 8); });
  Add("mt_false_share_passive/4", 4 * 2000000L,
      [] { wl_false_sharing_passive(2000000, 4, 8); });

  // ~500 MiB in mixed sizes with holes, then nine in ten freed, then 1.5 s of
  // light activity.  Time excludes the light activity; counters say what
  // the RSS was at each stage.
  benchmark::RegisterBenchmark(
      "fragment/500M",
      [](benchmark::State& state) {
        wl_fragment_result r = {};
        for (auto _ : state) {
          wl_fragment(1, 500 * kMiB, 1.5, &r);
          state.SetIterationTime(r.work_seconds);
        }
        state.SetItemsProcessed(state.iterations() * r.blocks);
        ReportRss(state);
        state.counters["rss_after_free_kib"] = static_cast<double>(r.freed_kib);
        state.counters["rss_final_kib"] = static_cast<double>(r.final_kib);
      })
      ->UseManualTime()
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) {
  RegisterAll();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  const char* preload = std::getenv("LD_PRELOAD");
  benchmark::AddCustomContext("ld_preload", preload && *preload ? preload : "(none)");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
