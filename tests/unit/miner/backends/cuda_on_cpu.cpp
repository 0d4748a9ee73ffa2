// Runs the CUDA scan kernel of hashfarm.miner.backends.gpu_cuda_kernel on the CPU.
//
// The kernel source is included unchanged after the stand-ins below for the CUDA keywords
// and the three intrinsics it uses; the grid is walked block by block, thread by thread.
// Usage: cuda_on_cpu GRID BLOCK OUT_SIZE m0..m7 t0 t1 t2 top nonce_start count per_thread capacity
// Prints the OUT_SIZE words of the result buffer, space separated.
#include <cstdio>
#include <cstdlib>
#include <vector>

#define __global__
#define __device__
#define __constant__ static const
#define __forceinline__ inline

struct Dim3 { unsigned x; };
static Dim3 blockIdx, threadIdx, blockDim;

// CUDA: the low 32 bits of (hi:lo) >> (n & 31).
static inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned n) {
    unsigned long long both = ((unsigned long long)hi << 32) | lo;
    return (unsigned)(both >> (n & 31));
}

// CUDA: byte i of the result is byte (selector nibble i) of the 8 bytes y:x.
static inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    unsigned long long both = ((unsigned long long)y << 32) | x;
    unsigned r = 0;
    for (int i = 0; i < 4; ++i) r |= (unsigned)((both >> (8 * ((s >> (4 * i)) & 7))) & 0xff) << (8 * i);
    return r;
}

static inline unsigned atomicAdd(unsigned* p, unsigned v) { unsigned old = *p; *p += v; return old; }

#include "kernel.cu"

int main(int argc, char** argv) {
    if (argc != 4 + 16) { std::fprintf(stderr, "expected 19 arguments, got %d\n", argc - 1); return 2; }
    unsigned grid = std::strtoul(argv[1], nullptr, 0), block = std::strtoul(argv[2], nullptr, 0);
    std::vector<unsigned> out(std::strtoul(argv[3], nullptr, 0), 0);
    unsigned a[16];
    for (int i = 0; i < 16; ++i) a[i] = std::strtoul(argv[4 + i], nullptr, 0);
    unsigned long long count = std::strtoull(argv[4 + 13], nullptr, 0);
    blockDim.x = block;
    for (blockIdx.x = 0; blockIdx.x < grid; ++blockIdx.x)
        for (threadIdx.x = 0; threadIdx.x < block; ++threadIdx.x)
            sha256d_scan(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10],
                         a[11], a[12], count, a[14], a[15], out.data());
    for (unsigned v : out) std::printf("%u ", v);
    std::printf("\n");
    return 0;
}
