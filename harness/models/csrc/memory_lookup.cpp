// The MemoryLayer's fused CPU path: hash, weight and weighted gather-sum in a few passes over
// memory, where the reference path (harness/models/memory_layer.py) makes a dozen.
//
// Shapes: h (N, K, b) hash values; tables (K, R, H) with R = 2^b; rows (N, K) int32 row of each
// table; p (N, K) weight of each row; y (N, H). Same math as the reference; sums may be ordered
// differently, so results agree to float rounding, not bit for bit.
//
// Speed comes from cache blocking. A memory layer reads K rows of H values per token and does
// one multiply-add per value read, so it runs at the speed it can fetch rows. All passes walk
// the output columns in tiles of one cache line, and the tables in groups small enough that the
// rows of one (column tile, table group) stay in the core's L2 cache while every token reads
// them: the rows come from L2 instead of L3 or DRAM.

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__AVX512F__)
extern "C" __m512 _ZGVeN16v_expf(__m512);  // glibc's vector expf (libmvec)
#endif

namespace {

constexpr int64_t kLineBytes = 64;
constexpr int64_t kHashBlock = 256;  // (token, table) pairs per hash step: the sigmoids fit L1

// Bytes of table rows one (column tile, table group) pass may touch: half the L2 cache, so the
// token data streaming past does not evict them.
int64_t tile_budget() {
  static const int64_t budget = [] {
    if (const char* env = std::getenv("HARNESS_TILE_BYTES")) return static_cast<int64_t>(std::atoll(env));
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return static_cast<int64_t>(l2 > 0 ? l2 / 2 : 512 * 1024);
  }();
  return budget;
}

// Sixteen float lanes: one AVX-512 register where the compiler targets it, else a plain array
// the compiler may vectorize as it can. The kernels below are written once against these.
constexpr int64_t kLanes = 16;
#if defined(__AVX512F__)
using Vec = __m512;
inline Vec vzero() { return _mm512_setzero_ps(); }
inline Vec vset(float x) { return _mm512_set1_ps(x); }
inline Vec vload(const float* p) { return _mm512_loadu_ps(p); }
inline Vec vload(const uint16_t* p) {  // bfloat16 is the high half of a float
  __m256i half = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16));
}
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline void vstore(float* p, Vec v) { _mm512_storeu_ps(p, v); }
inline float vsum(Vec v) { return _mm512_reduce_add_ps(v); }
#else
struct Vec { float x[kLanes]; };
inline Vec vzero() { return Vec{}; }
inline Vec vset(float x) { Vec v; for (auto& e : v.x) e = x; return v; }
inline Vec vload(const float* p) { Vec v; std::memcpy(v.x, p, sizeof v.x); return v; }
inline Vec vload(const uint16_t* p) {
  Vec v;
  for (int64_t i = 0; i < kLanes; ++i) {
    uint32_t bits = static_cast<uint32_t>(p[i]) << 16;
    std::memcpy(&v.x[i], &bits, sizeof(float));
  }
  return v;
}
inline Vec vfma(Vec a, Vec b, Vec c) { for (int64_t i = 0; i < kLanes; ++i) c.x[i] += a.x[i] * b.x[i]; return c; }
inline void vstore(float* p, Vec v) { std::memcpy(p, v.x, sizeof v.x); }
inline float vsum(Vec v) { float s = 0.f; for (float e : v.x) s += e; return s; }
#endif

// Loads and stores of a tile's first `width` values of a float row; the rest read as zero.
inline Vec vload_part(const float* p, int64_t width) {
  if (width >= kLanes) return vload(p);
  float buffer[kLanes] = {};
  std::memcpy(buffer, p, std::max<int64_t>(width, 0) * sizeof(float));
  return vload(buffer);
}
inline void vstore_part(float* p, Vec v, int64_t width) {
  if (width >= kLanes) return vstore(p, v);
  float buffer[kLanes];
  vstore(buffer, v);
  std::memcpy(p, buffer, std::max<int64_t>(width, 0) * sizeof(float));
}

// out[i] = sigmoid(scale * |v[i]|)
void sigmoid_abs(const float* v, float* out, int64_t n, float scale) {
  int64_t i = 0;
#if defined(__AVX512F__)
  const __m512 neg = _mm512_set1_ps(-scale), one = _mm512_set1_ps(1.f);
  for (; i + 16 <= n; i += 16) {
    __m512 e = _ZGVeN16v_expf(_mm512_mul_ps(_mm512_abs_ps(_mm512_loadu_ps(v + i)), neg));
    _mm512_storeu_ps(out + i, _mm512_div_ps(one, _mm512_add_ps(one, e)));
  }
#endif
  for (; i < n; ++i) out[i] = 1.f / (1.f + std::exp(-scale * std::fabs(v[i])));
}

void check_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous(),
              name, " must be a contiguous float32 CPU tensor");
}

// (N, K, b) -> rows (N, K) int32, p (N, K): bucket = sum_j [h_j >= 0] 2^j,
// p = prod_j sigmoid(scale |h_j|), times sum_j |h_j| when l1.
std::vector<at::Tensor> hash_forward(const at::Tensor& h, double scale, bool l1) {
  check_float(h, "h");
  TORCH_CHECK(h.dim() == 3 && h.size(2) <= 30, "h must be (N, K, b) with b <= 30");
  const int64_t pairs = h.size(0) * h.size(1), b = h.size(2);
  auto rows = at::empty({h.size(0), h.size(1)}, h.options().dtype(at::kInt));
  auto p = at::empty({h.size(0), h.size(1)}, h.options());
  const float* hp = h.data_ptr<float>();
  int32_t* rp = rows.data_ptr<int32_t>();
  float* pp = p.data_ptr<float>();
  at::parallel_for(0, pairs, kHashBlock, [&](int64_t begin, int64_t end) {
    std::vector<float> s(kHashBlock * b);
    for (int64_t start = begin; start < end; start += kHashBlock) {
      const int64_t count = std::min(kHashBlock, end - start);
      sigmoid_abs(hp + start * b, s.data(), count * b, static_cast<float>(scale));
      for (int64_t g = 0; g < count; ++g) {
        const float* z = hp + (start + g) * b;
        const float* sg = s.data() + g * b;
        int32_t code = 0;
        float prod = 1.f, norm = 0.f;
        for (int64_t j = 0; j < b; ++j) {
          code |= static_cast<int32_t>(z[j] >= 0.f) << j;  // sign(0) counts as +1
          prod *= sg[j];
          norm += std::fabs(z[j]);
        }
        rp[start + g] = code;
        pp[start + g] = l1 ? prod * norm : prod;
      }
    }
  });
  return {rows, p};
}

// Gradient of p with respect to h. With u_j = scale |h_j| and s_j = sigmoid(u_j),
// d prod / d h_j = prod (1 - s_j) scale sign(h_j); l1 adds prod sign(h_j) times the norm's rule.
// sign(0) = 0, as torch's abs backward.
at::Tensor hash_backward(const at::Tensor& h, const at::Tensor& grad_p, double scale, bool l1) {
  check_float(h, "h");
  check_float(grad_p, "grad_p");
  const int64_t pairs = h.size(0) * h.size(1), b = h.size(2);
  auto grad_h = at::empty_like(h);
  const float* hp = h.data_ptr<float>();
  const float* gp = grad_p.data_ptr<float>();
  float* out = grad_h.data_ptr<float>();
  const float fscale = static_cast<float>(scale);
  at::parallel_for(0, pairs, kHashBlock, [&](int64_t begin, int64_t end) {
    std::vector<float> s(kHashBlock * b);
    for (int64_t start = begin; start < end; start += kHashBlock) {
      const int64_t count = std::min(kHashBlock, end - start);
      sigmoid_abs(hp + start * b, s.data(), count * b, fscale);
      for (int64_t g = 0; g < count; ++g) {
        const float* z = hp + (start + g) * b;
        const float* sg = s.data() + g * b;
        float* dz = out + (start + g) * b;
        float prod = 1.f, norm = 0.f;
        for (int64_t j = 0; j < b; ++j) {
          prod *= sg[j];
          norm += std::fabs(z[j]);
        }
        const float grad = gp[start + g];
        for (int64_t j = 0; j < b; ++j) {
          const float sign = static_cast<float>((z[j] > 0.f) - (z[j] < 0.f));
          const float dprod = prod * (1.f - sg[j]) * fscale * sign;
          dz[j] = grad * (l1 ? dprod * norm + prod * sign : dprod);
        }
      }
    }
  });
  return grad_h;
}

// Tiling of a (K, R, H) table of T values: W values per column tile (one cache line), G tables
// per group. Rows of one tile sit H values apart, a power of two in most models, so in place
// they would all map to a few cache sets and evict each other; each pass therefore first copies
// its (G, R, W) slice into a contiguous per-thread buffer, which fills the cache evenly.
template <typename T>
struct Tiling {
  static constexpr int64_t W = kLineBytes / sizeof(T), V = W / kLanes;  // V vectors per tile
  int64_t K, R, H, G, tiles;
  Tiling(int64_t K_, int64_t R_, int64_t H_) : K(K_), R(R_), H(H_) {
    G = std::clamp<int64_t>(tile_budget() / (R * kLineBytes), 1, K);
    tiles = (H + W - 1) / W;
  }
  int64_t width(int64_t tile) const { return std::min(W, H - tile * W); }
};

// The calling thread's slice buffer, kept between calls. It sits on 2 MB pages where the kernel
// allows: the gathers jump across the whole slice, and on 4 KB pages most of them would also
// miss the TLB. Narrow last tiles zero it first, so their padding reads as 0.
template <typename T>
T* slice_buffer(const Tiling<T>& tl) {
  struct Buffer {
    void* data = nullptr;
    size_t bytes = 0;
    ~Buffer() { std::free(data); }
  };
  thread_local Buffer buffer;
  constexpr size_t kPage = size_t{1} << 21;
  const size_t need = static_cast<size_t>(tl.G * tl.R * tl.W) * sizeof(T);
  if (need > buffer.bytes) {
    std::free(buffer.data);
    const size_t bytes = (need + kPage - 1) / kPage * kPage;
    TORCH_CHECK(posix_memalign(&buffer.data, kPage, bytes) == 0, "out of memory");
    madvise(buffer.data, bytes, MADV_HUGEPAGE);  // a hint; 4 KB pages still work
    buffer.bytes = bytes;
  }
  return static_cast<T*>(buffer.data);
}

// slice[(k - k0) R + r] = tables[k, r, tile columns], for k in [k0, k1)
template <typename T>
void copy_slice(const T* tables, T* slice, const Tiling<T>& tl, int64_t tile, int64_t k0,
                int64_t k1) {
  const int64_t W = Tiling<T>::W, t0 = tile * W, width = tl.width(tile);
  if (width < W) std::fill_n(slice, (k1 - k0) * tl.R * W, T{0});
  for (int64_t r = k0 * tl.R; r < k1 * tl.R; ++r) {
    std::memcpy(slice + (r - k0 * tl.R) * W, tables + r * tl.H + t0, width * sizeof(T));
  }
}

// Adds the rows of B tokens at once: B independent accumulators keep the FMA pipeline and the
// cache's outstanding loads busy (one token alone is a chain of dependent adds).
template <typename T, int64_t B>
inline void gather_tokens(const int32_t* rows, const float* p, const T* slice, float* y,
                          int64_t n, int64_t k0, int64_t k1, const Tiling<T>& tl, int64_t width) {
  constexpr int64_t W = Tiling<T>::W, V = Tiling<T>::V;
  const int64_t K = tl.K, R = tl.R, H = tl.H;
  Vec acc[B][V];
  for (int64_t j = 0; j < B; ++j) {
    for (int64_t v = 0; v < V; ++v) {
      acc[j][v] = k0 == 0 ? vzero() : vload_part(y + (n + j) * H + v * kLanes, width - v * kLanes);
    }
  }
  for (int64_t k = k0; k < k1; ++k) {
    for (int64_t j = 0; j < B; ++j) {
      const Vec pk = vset(p[(n + j) * K + k]);
      const T* row = slice + ((k - k0) * R + rows[(n + j) * K + k]) * W;
      for (int64_t v = 0; v < V; ++v) acc[j][v] = vfma(pk, vload(row + v * kLanes), acc[j][v]);
    }
  }
  for (int64_t j = 0; j < B; ++j) {
    for (int64_t v = 0; v < V; ++v) {
      vstore_part(y + (n + j) * H + v * kLanes, acc[j][v], width - v * kLanes);
    }
  }
}

// y[n] = sum_k p[n, k] tables[k, rows[n, k]]. Threads own column tiles: no shared writes, and
// each slice is copied once in all.
template <typename T>
void gather_forward_impl(const int32_t* rows, const float* p, const T* tables, float* y,
                         int64_t N, const Tiling<T>& tl) {
  constexpr int64_t W = Tiling<T>::W, B = 8;
  at::parallel_for(0, tl.tiles, 1, [&](int64_t tile0, int64_t tile1) {
    T* slice = slice_buffer(tl);
    for (int64_t tile = tile0; tile < tile1; ++tile) {
      const int64_t width = tl.width(tile);
      float* y_tile = y + tile * W;
      for (int64_t k0 = 0; k0 < tl.K; k0 += tl.G) {
        const int64_t k1 = std::min(tl.K, k0 + tl.G);
        copy_slice(tables, slice, tl, tile, k0, k1);
        int64_t n = 0;
        for (; n + B <= N; n += B) {
          gather_tokens<T, B>(rows, p, slice, y_tile, n, k0, k1, tl, width);
        }
        for (; n < N; ++n) gather_tokens<T, 1>(rows, p, slice, y_tile, n, k0, k1, tl, width);
      }
    }
  });
}

at::Tensor gather_forward(const at::Tensor& rows, const at::Tensor& p, const at::Tensor& tables) {
  check_float(p, "p");
  TORCH_CHECK(rows.scalar_type() == at::kInt && rows.is_contiguous(), "rows must be int32");
  TORCH_CHECK(tables.dim() == 3 && tables.is_contiguous() && tables.device().is_cpu(),
              "tables must be a contiguous (K, R, H) CPU tensor");
  const int64_t N = rows.size(0), K = tables.size(0), R = tables.size(1), H = tables.size(2);
  TORCH_CHECK(rows.size(1) == K && p.size(0) == N && p.size(1) == K, "rows, p must be (N, K)");
  auto y = at::empty({N, H}, p.options());
  if (tables.scalar_type() == at::kFloat) {
    gather_forward_impl<float>(rows.data_ptr<int32_t>(), p.data_ptr<float>(),
                               tables.data_ptr<float>(), y.data_ptr<float>(), N,
                               Tiling<float>(K, R, H));
  } else {
    TORCH_CHECK(tables.scalar_type() == at::kBFloat16, "tables must be float32 or bfloat16");
    gather_forward_impl<uint16_t>(rows.data_ptr<int32_t>(), p.data_ptr<float>(),
                                  reinterpret_cast<const uint16_t*>(tables.data_ptr()),
                                  y.data_ptr<float>(), N, Tiling<uint16_t>(K, R, H));
  }
  return y;
}

// grad_p[n, k] = <grad_y[n], tables[k, rows[n, k]]>. Threads own column tiles and sum their
// tiles' partial dot products into one (N, K) buffer each; the buffers are added at the end.
at::Tensor gather_backward_weights(const at::Tensor& grad_y, const at::Tensor& rows,
                                   const at::Tensor& tables) {
  check_float(grad_y, "grad_y");
  check_float(tables, "tables");
  const int64_t N = rows.size(0), K = tables.size(0), R = tables.size(1), H = tables.size(2);
  const Tiling<float> tl(K, R, H);
  constexpr int64_t W = Tiling<float>::W;
  const int64_t parts = std::min<int64_t>(at::get_num_threads(), tl.tiles);
  const int64_t per_part = (tl.tiles + parts - 1) / parts;
  auto partial = at::zeros({parts, N, K}, grad_y.options());
  const float* g = grad_y.data_ptr<float>();
  const float* tab = tables.data_ptr<float>();
  const int32_t* rp = rows.data_ptr<int32_t>();
  at::parallel_for(0, parts, 1, [&](int64_t part0, int64_t part1) {
    float* slice = slice_buffer(tl);
    for (int64_t part = part0; part < part1; ++part) {
      float* gp = partial.data_ptr<float>() + part * N * K;
      for (int64_t tile = part * per_part; tile < std::min(tl.tiles, (part + 1) * per_part);
           ++tile) {
        const int64_t t0 = tile * W, width = tl.width(tile);
        for (int64_t k0 = 0; k0 < K; k0 += tl.G) {
          const int64_t k1 = std::min(K, k0 + tl.G);
          copy_slice(tab, slice, tl, tile, k0, k1);
          for (int64_t n = 0; n < N; ++n) {
            const Vec gv = vload_part(g + n * H + t0, width);
            for (int64_t k = k0; k < k1; ++k) {
              const float* row = slice + ((k - k0) * R + rp[n * K + k]) * W;
              gp[n * K + k] += vsum(vfma(gv, vload(row), vzero()));
            }
          }
        }
      }
    }
  });
  return parts == 1 ? partial[0] : partial.sum(0);
}

// grad_tables[k, rows[n, k]] += p[n, k] grad_y[n]. Threads own column tiles, so no two write the
// same value; each (G, R, W) slice is summed in a contiguous buffer, then copied out.
at::Tensor gather_backward_tables(const at::Tensor& grad_y, const at::Tensor& rows,
                                  const at::Tensor& p, int64_t num_rows) {
  check_float(grad_y, "grad_y");
  check_float(p, "p");
  const int64_t N = rows.size(0), K = rows.size(1), R = num_rows, H = grad_y.size(1);
  const Tiling<float> tl(K, R, H);
  constexpr int64_t W = Tiling<float>::W;
  auto grad_tables = at::empty({K, R, H}, grad_y.options());
  const float* g = grad_y.data_ptr<float>();
  const float* pp = p.data_ptr<float>();
  const int32_t* rp = rows.data_ptr<int32_t>();
  float* gt = grad_tables.data_ptr<float>();
  at::parallel_for(0, tl.tiles, 1, [&](int64_t tile0, int64_t tile1) {
    float* slice = slice_buffer(tl);
    for (int64_t tile = tile0; tile < tile1; ++tile) {
      const int64_t t0 = tile * W, width = tl.width(tile);
      for (int64_t k0 = 0; k0 < K; k0 += tl.G) {
        const int64_t k1 = std::min(K, k0 + tl.G);
        std::fill_n(slice, (k1 - k0) * R * W, 0.f);
        for (int64_t n = 0; n < N; ++n) {
          const Vec gv = vload_part(g + n * H + t0, width);
          for (int64_t k = k0; k < k1; ++k) {
            float* row = slice + ((k - k0) * R + rp[n * K + k]) * W;
            vstore(row, vfma(vset(pp[n * K + k]), gv, vload(row)));
          }
        }
        for (int64_t r = k0 * R; r < k1 * R; ++r) {
          std::memcpy(gt + r * H + t0, slice + (r - k0 * R) * W, width * sizeof(float));
        }
      }
    }
  });
  return grad_tables;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("hash_forward", &hash_forward, "(N, K, b) -> rows (N, K) int32, p (N, K)");
  m.def("hash_backward", &hash_backward, "grad of p with respect to h");
  m.def("gather_forward", &gather_forward, "y (N, H) = sum_k p tables[k, rows]");
  m.def("gather_backward_weights", &gather_backward_weights, "grad_p (N, K)");
  m.def("gather_backward_tables", &gather_backward_tables, "grad_tables (K, R, H)");
}
