// cpuid-based detection; AVX and AVX-512 count only when the OS saves their
// registers (XGETBV), as a kernel using them would otherwise fault.
#include "cpu_features.h"

#include <cstdint>
#include <cstring>

#include <unistd.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define FUSEDLAYERS_X86 1
#endif

namespace fusedlayers {
namespace {

#ifdef FUSEDLAYERS_X86
uint64_t read_xcr0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

bool bit(uint32_t reg, int b) { return (reg >> b) & 1u; }

// Walks the deterministic cache parameters leaf (Intel's 4 and AMD's 0x8000001D
// share its layout) and records the data/unified cache of each level.
void detect_caches(unsigned int leaf, CpuFeatures* f) {
  for (unsigned int index = 0; index < 16; ++index) {
    unsigned int eax, ebx, ecx, edx;
    __cpuid_count(leaf, index, eax, ebx, ecx, edx);
    const unsigned int type = eax & 0x1f;  // 0: no more caches, 1: data, 2: instruction, 3: unified
    if (type == 0) break;
    if (type == 2) continue;
    const int64_t ways = ((ebx >> 22) & 0x3ff) + 1;
    const int64_t partitions = ((ebx >> 12) & 0x3ff) + 1;
    const int64_t line = (ebx & 0xfff) + 1;
    const int64_t sets = static_cast<int64_t>(ecx) + 1;
    const int64_t bytes = ways * partitions * line * sets;
    switch ((eax >> 5) & 0x7) {
      case 1: f->l1d_bytes = bytes; break;
      case 2: f->l2_bytes = bytes; break;
      case 3: f->l3_bytes = bytes; break;
      default: break;
    }
  }
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned int eax, ebx, ecx, edx;
  if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return f;
  const unsigned int max_leaf = eax;
  char vendor[13] = {};
  std::memcpy(vendor, &ebx, 4);
  std::memcpy(vendor + 4, &edx, 4);
  std::memcpy(vendor + 8, &ecx, 4);
  f.vendor = vendor;

  __get_cpuid(1, &eax, &ebx, &ecx, &edx);
  f.sse42 = bit(ecx, 20);
  const bool osxsave = bit(ecx, 27);
  const uint64_t xcr0 = osxsave ? read_xcr0() : 0;
  const bool os_avx = (xcr0 & 0x6) == 0x6;            // XMM and YMM state
  const bool os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;  // opmask, ZMM_Hi256, Hi16_ZMM
  const bool os_amx = (xcr0 & 0x60000) == 0x60000;     // XTILECFG, XTILEDATA
  f.avx = os_avx && bit(ecx, 28);
  f.fma = f.avx && bit(ecx, 12);
  f.f16c = f.avx && bit(ecx, 29);

  if (max_leaf >= 7) {
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    f.avx2 = f.avx && bit(ebx, 5);
    f.avx512f = os_avx512 && bit(ebx, 16);
    f.avx512dq = f.avx512f && bit(ebx, 17);
    f.avx512bw = f.avx512f && bit(ebx, 30);
    f.avx512vl = f.avx512f && bit(ebx, 31);
    f.avx512_fp16 = f.avx512f && bit(edx, 23);
    f.amx_tile = os_amx && bit(edx, 24);
    f.amx_bf16 = f.amx_tile && bit(edx, 22);
    unsigned int eax1, ebx1, ecx1, edx1;
    __cpuid_count(7, 1, eax1, ebx1, ecx1, edx1);
    f.avx512_bf16 = f.avx512f && bit(eax1, 5);
  }

  __get_cpuid(0x80000000, &eax, &ebx, &ecx, &edx);
  if (eax >= 0x80000004) {
    char brand[49] = {};
    for (unsigned int leaf = 0; leaf < 3; ++leaf) {
      __get_cpuid(0x80000002 + leaf, &eax, &ebx, &ecx, &edx);
      std::memcpy(brand + 16 * leaf, &eax, 4);
      std::memcpy(brand + 16 * leaf + 4, &ebx, 4);
      std::memcpy(brand + 16 * leaf + 8, &ecx, 4);
      std::memcpy(brand + 16 * leaf + 12, &edx, 4);
    }
    f.brand = brand;
    const size_t first = f.brand.find_first_not_of(' ');
    f.brand = first == std::string::npos ? std::string() : f.brand.substr(first);
  }

  __get_cpuid(0x80000000, &eax, &ebx, &ecx, &edx);
  const unsigned int max_ext_leaf = eax;
  if (f.vendor == "GenuineIntel" && max_leaf >= 4) {
    detect_caches(4, &f);
  } else if (f.vendor == "AuthenticAMD" && max_ext_leaf >= 0x8000001D) {
    detect_caches(0x8000001D, &f);
  }
  return f;
}
#else
CpuFeatures detect() { return CpuFeatures{}; }
#endif

// Fills the cache sizes cpuid did not report from sysconf (glibc knows more CPUs).
CpuFeatures with_sysconf_caches(CpuFeatures f) {
#ifdef _SC_LEVEL1_DCACHE_SIZE
  if (f.l1d_bytes <= 0) f.l1d_bytes = sysconf(_SC_LEVEL1_DCACHE_SIZE);
  if (f.l2_bytes <= 0) f.l2_bytes = sysconf(_SC_LEVEL2_CACHE_SIZE);
  if (f.l3_bytes <= 0) f.l3_bytes = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
  if (f.l1d_bytes < 0) f.l1d_bytes = 0;
  if (f.l2_bytes < 0) f.l2_bytes = 0;
  if (f.l3_bytes < 0) f.l3_bytes = 0;
  return f;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = with_sysconf_caches(detect());
  return features;
}

}  // namespace fusedlayers
