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
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__)
extern "C" __m512 _ZGVeN16v_expf(__m512);  // glibc's vector expf (libmvec)
#endif

namespace {

constexpr int64_t kHashBlock = 256;  // (token, table) pairs per hash step: the sigmoids fit L1

// Bytes of table rows one (column tile, table group) pass may touch: half the L2 cache, so the
// token data streaming past does not evict them.
int64_t tile_budget() {
  static const int64_t budget = [] {
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
inline Vec vload(const int8_t* p) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes));
}
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline Vec vadd(Vec a, Vec b) { return _mm512_add_ps(a, b); }
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
inline Vec vload(const int8_t* p) {
  Vec v;
  for (int64_t i = 0; i < kLanes; ++i) v.x[i] = static_cast<float>(p[i]);
  return v;
}
inline Vec vfma(Vec a, Vec b, Vec c) {
  for (int64_t i = 0; i < kLanes; ++i) c.x[i] += a.x[i] * b.x[i];
  return c;
}
inline Vec vadd(Vec a, Vec b) { for (int64_t i = 0; i < kLanes; ++i) a.x[i] += b.x[i]; return a; }
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

#if defined(__AVX512F__)
// hash_forward for b = 8 on chunks [begin, end): a register holds chunks g and g + 1; the sign
// mask gives both codes, and three swap-and-multiply steps give each half's product in lanes
// 0 and 8 (likewise the sums for l1).
void hash8(const float* hp, int32_t* rows, float* p, int64_t begin, int64_t end, float scale,
           bool l1) {
  const __m512 neg = _mm512_set1_ps(-scale), one = _mm512_set1_ps(1.f);
  auto fold = [](__m512 v, bool add) {
    auto op = [add](__m512 a, __m512 b) { return add ? _mm512_add_ps(a, b) : _mm512_mul_ps(a, b); };
    v = op(v, _mm512_permute_ps(v, 0xB1));  // swap neighbours
    v = op(v, _mm512_permute_ps(v, 0x4E));  // swap pairs
    return op(v, _mm512_shuffle_f32x4(v, v, 0xB1));  // swap 128-bit quarters
  };
  int64_t g = begin;
  for (; g + 2 <= end; g += 2) {
    const __m512 z = _mm512_loadu_ps(hp + g * 8);
    const __mmask16 sign = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_GE_OQ);
    const __m512 a = _mm512_abs_ps(z);
    const __m512 e = _ZGVeN16v_expf(_mm512_mul_ps(a, neg));
    const __m512 sig = _mm512_div_ps(one, _mm512_add_ps(one, e));
    __m512 weight = fold(sig, false);
    if (l1) weight = _mm512_mul_ps(weight, fold(a, true));
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, weight);
    rows[g] = sign & 0xFF;
    rows[g + 1] = sign >> 8;
    p[g] = lanes[0];
    p[g + 1] = lanes[8];
  }
  for (; g < end; ++g) {  // an odd last chunk
    int32_t code = 0;
    float prod = 1.f, norm = 0.f;
    for (int64_t j = 0; j < 8; ++j) {
      const float v = hp[g * 8 + j];
      code |= static_cast<int32_t>(v >= 0.f) << j;
      prod *= 1.f / (1.f + std::exp(-scale * std::fabs(v)));
      norm += std::fabs(v);
    }
    rows[g] = code;
    p[g] = l1 ? prod * norm : prod;
  }
}
#endif

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
#if defined(__AVX512F__)
    if (b == 8) {  // the paper's tau = 8: two chunks per register, no scalar loop
      hash8(hp, rp, pp, begin, end, static_cast<float>(scale), l1);
      return;
    }
#endif
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

// Tiling of a (K, R, H) table of T values: W = 64 values per column tile (4 cache lines of
// fp32, 2 of bf16, 1 of int8), G tables per group. Rows of one tile sit H values apart, a power
// of two in most models, so in place they would all map to a few cache sets and evict each
// other; each pass therefore first copies its (G, R, W) slice into a contiguous per-thread
// buffer, which fills the cache evenly. Tiles of several lines make each row read a few
// neighbouring lines (which the prefetcher streams) and leave fewer sums to finish per row.
constexpr int64_t kTile = 64;
template <typename T>
struct Tiling {
  static constexpr int64_t W = kTile, V = W / kLanes;  // V vectors per tile
  int64_t K, R, H, G, tiles;
  Tiling(int64_t K_, int64_t R_, int64_t H_) : K(K_), R(R_), H(H_) {
    G = std::clamp<int64_t>(tile_budget() / (R * W * static_cast<int64_t>(sizeof(T))), 1, K);
    tiles = (H + W - 1) / W;
  }
  int64_t width(int64_t tile) const { return std::min(W, H - tile * W); }
};

// Work items of a pass: every (column tile, token chunk), with just enough token chunks to give
// each thread work (a wide layer needs none: its tiles suffice).
struct Items {
  int64_t chunks, chunk_size, count;
  Items(int64_t tiles, int64_t N) {
    const int64_t wanted = (at::get_num_threads() + tiles - 1) / tiles;
    chunks = std::clamp<int64_t>(wanted, 1, std::max<int64_t>(N, 1));
    chunk_size = (N + chunks - 1) / chunks;
    count = tiles * chunks;
  }
};

// The calling thread's slice buffer, kept between calls (a pass needs one per table group and
// column tile; allocating it each time would fault its pages in again), cache-line aligned.
template <typename T>
T* slice_buffer(const Tiling<T>& tl) {
  struct Buffer {
    void* data = nullptr;
    size_t bytes = 0;
    ~Buffer() { std::free(data); }
  };
  thread_local Buffer buffer;
  const size_t need = static_cast<size_t>(tl.G * tl.R * tl.W) * sizeof(T);
  if (need > buffer.bytes) {
    std::free(buffer.data);
    buffer.data = nullptr;
    TORCH_CHECK(posix_memalign(&buffer.data, 64, need) == 0, "out of memory");
    buffer.bytes = need;
  }
  return static_cast<T*>(buffer.data);
}

// slice[(k - k0) R + r] = tables[k, r, tile columns], for k in [k0, k1)
template <typename T>
void copy_slice(const T* tables, T* slice, const Tiling<T>& tl, int64_t tile, int64_t k0,
                int64_t k1) {
  const int64_t W = Tiling<T>::W, t0 = tile * W, width = tl.width(tile);
  T* out = slice;
  const T* in = tables + k0 * tl.R * tl.H + t0;
  if (width == W) {  // a whole tile per row: a fixed-size copy the compiler inlines
    for (int64_t r = k0 * tl.R; r < k1 * tl.R; ++r, out += W, in += tl.H) {
      std::memcpy(out, in, W * sizeof(T));
    }
    return;
  }
  std::fill_n(slice, (k1 - k0) * tl.R * W, T{0});
  for (int64_t r = k0 * tl.R; r < k1 * tl.R; ++r, out += W, in += tl.H) {
    std::memcpy(out, in, width * sizeof(T));
  }
}

// Rows and weights of blocks of kBlock tokens, (N / kBlock, K, kBlock): the kBlock tokens a
// gather step reads for one table sit side by side, at fixed offsets from one pointer. The last
// block is padded with weight 0 and row 0.
constexpr int64_t kBlock = 8;
struct Blocked {
  int64_t blocks;
  std::vector<int32_t> rows;
  std::vector<float> p;
  Blocked(const int32_t* rows_nk, const float* p_nk, int64_t N, int64_t K)
      : blocks((N + kBlock - 1) / kBlock), rows(blocks * K * kBlock, 0),
        p(blocks * K * kBlock, 0.f) {
    at::parallel_for(0, blocks, 64, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        for (int64_t j = 0; j < kBlock && b * kBlock + j < N; ++j) {
          const int64_t n = b * kBlock + j;
          for (int64_t k = 0; k < K; ++k) {
            rows[(b * K + k) * kBlock + j] = rows_nk[n * K + k];
            p[(b * K + k) * kBlock + j] = p_nk[n * K + k];
          }
        }
      }
    });
  }
};

// Adds the rows of a block of tokens at once: kBlock independent accumulators keep the FMA
// pipeline and the cache's outstanding loads busy (one token alone is a chain of dependent adds).
// int8 tables carry one scale per row (`scale`, (K, R)); other types pass nullptr.
template <typename T>
inline void gather_block(const Blocked& bl, int64_t b, const T* slice, const float* scale,
                         float* y, int64_t N, int64_t k0, int64_t k1, const Tiling<T>& tl,
                         int64_t width) {
  constexpr int64_t W = Tiling<T>::W, V = Tiling<T>::V;
  // Tokens summed at once: J x V accumulators must leave registers for the loads (32 in all).
  constexpr int64_t J = std::min<int64_t>(kBlock, 16 / V);
  const int64_t K = tl.K, R = tl.R, H = tl.H;
  for (int64_t j0 = 0; j0 < kBlock; j0 += J) {
    const int64_t n0 = b * kBlock + j0;
    Vec acc[J][V];
    for (int64_t j = 0; j < J; ++j) {
      for (int64_t v = 0; v < V; ++v) {
        acc[j][v] = (k0 == 0 || n0 + j >= N) ? vzero()
                                             : vload_part(y + (n0 + j) * H + v * kLanes,
                                                          width - v * kLanes);
      }
    }
    const int32_t* rows = bl.rows.data() + (b * K + k0) * kBlock + j0;
    const float* p = bl.p.data() + (b * K + k0) * kBlock + j0;
    for (int64_t k = k0; k < k1; ++k, rows += kBlock, p += kBlock) {
      const T* base = slice + (k - k0) * R * W;
      for (int64_t j = 0; j < J; ++j) {
        const Vec pk = vset(std::is_same_v<T, int8_t> ? p[j] * scale[k * R + rows[j]] : p[j]);
        const T* row = base + rows[j] * W;
        for (int64_t v = 0; v < V; ++v) acc[j][v] = vfma(pk, vload(row + v * kLanes), acc[j][v]);
      }
    }
    for (int64_t j = 0; j < J && n0 + j < N; ++j) {
      for (int64_t v = 0; v < V; ++v) {
        vstore_part(y + (n0 + j) * H + v * kLanes, acc[j][v], width - v * kLanes);
      }
    }
  }
}

// y[n] = sum_k p[n, k] tables[k, rows[n, k]]. Threads own column tiles: no shared writes, and
// each slice is copied once in all.
template <typename T>
void gather_forward_impl(const int32_t* rows, const float* p, const T* tables,
                         const float* scale, float* y, int64_t N, const Tiling<T>& tl) {
  constexpr int64_t W = Tiling<T>::W;
  const Blocked bl(rows, p, N, tl.K);
  const Items items(tl.tiles, bl.blocks);  // token chunks in whole blocks
  at::parallel_for(0, items.count, 1, [&](int64_t item0, int64_t item1) {
    T* slice = slice_buffer(tl);
    for (int64_t item = item0; item < item1; ++item) {
      const int64_t tile = item / items.chunks, chunk = item % items.chunks;
      const int64_t b0 = chunk * items.chunk_size;
      const int64_t b1 = std::min(bl.blocks, b0 + items.chunk_size);
      const int64_t width = tl.width(tile);
      float* y_tile = y + tile * W;
      for (int64_t k0 = 0; k0 < tl.K; k0 += tl.G) {
        const int64_t k1 = std::min(tl.K, k0 + tl.G);
        copy_slice(tables, slice, tl, tile, k0, k1);
        for (int64_t b = b0; b < b1; ++b) {
          gather_block<T>(bl, b, slice, scale, y_tile, N, k0, k1, tl, width);
        }
      }
    }
  });
}

// scale: (K, R) float for int8 tables, an empty tensor otherwise.
at::Tensor gather_forward(const at::Tensor& rows, const at::Tensor& p, const at::Tensor& tables,
                          const at::Tensor& scale) {
  check_float(p, "p");
  TORCH_CHECK(rows.scalar_type() == at::kInt && rows.is_contiguous(), "rows must be int32");
  TORCH_CHECK(tables.dim() == 3 && tables.is_contiguous() && tables.device().is_cpu(),
              "tables must be a contiguous (K, R, H) CPU tensor");
  const int64_t N = rows.size(0), K = tables.size(0), R = tables.size(1), H = tables.size(2);
  TORCH_CHECK(rows.size(1) == K && p.size(0) == N && p.size(1) == K, "rows, p must be (N, K)");
  auto y = at::empty({N, H}, p.options());
  const int32_t* rp = rows.data_ptr<int32_t>();
  const float* pp = p.data_ptr<float>();
  switch (tables.scalar_type()) {
    case at::kFloat:
      gather_forward_impl<float>(rp, pp, tables.data_ptr<float>(), nullptr, y.data_ptr<float>(),
                                 N, Tiling<float>(K, R, H));
      break;
    case at::kBFloat16:
      gather_forward_impl<uint16_t>(rp, pp, reinterpret_cast<const uint16_t*>(tables.data_ptr()),
                                    nullptr, y.data_ptr<float>(), N, Tiling<uint16_t>(K, R, H));
      break;
    case at::kChar:
      check_float(scale, "scale");
      TORCH_CHECK(scale.numel() == K * R, "int8 tables need a (K, R) scale");
      gather_forward_impl<int8_t>(rp, pp, tables.data_ptr<int8_t>(), scale.data_ptr<float>(),
                                  y.data_ptr<float>(), N, Tiling<int8_t>(K, R, H));
      break;
    default:
      TORCH_CHECK(false, "tables must be float32, bfloat16 or int8");
  }
  return y;
}

// Sums of 16 vectors: out[j] = sum of the lanes of v[j]. A transposing add tree shares its
// shuffles among the 16 sums (30 in all, where 16 separate reductions take 64).
inline Vec sum16(const Vec* v) {
#if defined(__AVX512F__)
  __m512 s[8], t[4], u[2];
  for (int i = 0; i < 8; ++i) {  // 256-bit halves: s[i] holds v[2i] then v[2i+1]
    s[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                         _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
  }
  for (int i = 0; i < 4; ++i) {  // 128-bit quarters: quarter q of t[i] belongs to v[4i + q]
    t[i] = _mm512_add_ps(_mm512_shuffle_f32x4(s[2 * i], s[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(s[2 * i], s[2 * i + 1], 0xDD));
  }
  for (int i = 0; i < 2; ++i) {  // pairs of floats within each quarter
    u[i] = _mm512_add_ps(_mm512_shuffle_ps(t[2 * i], t[2 * i + 1], 0x44),
                         _mm512_shuffle_ps(t[2 * i], t[2 * i + 1], 0xEE));
  }
  const __m512 w = _mm512_add_ps(_mm512_shuffle_ps(u[0], u[1], 0x88),
                                 _mm512_shuffle_ps(u[0], u[1], 0xDD));
  // w[4q + m] is the sum of v[4m + q]: transpose the 4 x 4 lane index.
  const __m512i order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
  return _mm512_permutexvar_ps(order, w);
#else
  Vec out;
  for (int64_t j = 0; j < kLanes; ++j) out.x[j] = vsum(v[j]);
  return out;
#endif
}

// Tokens of each table in bucket order (a counting sort), shared by all column tiles:
// bucket r of table k holds tokens order[k, start[k, r] : start[k, r + 1]], with weights
// weight[k, i] = p[order[k, i], k].
struct Buckets {
  std::vector<int32_t> start, order;
  std::vector<float> weight;
  Buckets(const int32_t* rows, const float* p, int64_t N, int64_t K, int64_t R)
      : start(K * (R + 1), 0), order(K * N), weight(K * N) {
    // Threads own ranges of tables and read rows token by token (each token's K entries are
    // contiguous): a counting pass, prefix sums, a placing pass.
    at::parallel_for(0, K, 8, [&](int64_t k0, int64_t k1) {
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t k = k0; k < k1; ++k) ++start[k * (R + 1) + rows[n * K + k] + 1];
      }
      std::vector<int32_t> next((k1 - k0) * R);
      for (int64_t k = k0; k < k1; ++k) {
        int32_t* first = start.data() + k * (R + 1);
        for (int64_t r = 0; r < R; ++r) first[r + 1] += first[r];
        std::copy(first, first + R, next.begin() + (k - k0) * R);
      }
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t k = k0; k < k1; ++k) {
          const int32_t slot = next[(k - k0) * R + rows[n * K + k]]++;
          order[k * N + slot] = static_cast<int32_t>(n);
          weight[k * N + slot] = p[n * K + k];
        }
      }
    });
  }
};

// grad_p[n, k] = <grad_y[n], tables[k, rows[n, k]]>, token by token like the forward, the dot
// products of 16 tables at a time summed by one add tree into a vector of grad_p's row.
void weights_grad_tile(const float* g, const int32_t* rows, const float* slice, float* gp,
                       int64_t n0, int64_t n1, int64_t k0, int64_t k1, const Tiling<float>& tl,
                       int64_t t0, int64_t width) {
  constexpr int64_t W = Tiling<float>::W, V = Tiling<float>::V;
  const int64_t K = tl.K, R = tl.R, H = tl.H;
  Vec dots[kLanes];
  for (int64_t n = n0; n < n1; ++n) {
    Vec gv[V];
    for (int64_t v = 0; v < V; ++v) {
      gv[v] = vload_part(g + n * H + t0 + v * kLanes, width - v * kLanes);
    }
    for (int64_t kb = k0; kb < k1; kb += kLanes) {
      const int64_t count = std::min(kLanes, k1 - kb);
      for (int64_t j = 0; j < kLanes; ++j) {
        dots[j] = vzero();
        if (j >= count) continue;
        const float* row = slice + ((kb + j - k0) * R + rows[n * K + kb + j]) * W;
        for (int64_t v = 0; v < V; ++v) dots[j] = vfma(gv[v], vload(row + v * kLanes), dots[j]);
      }
      float* out = gp + n * K + kb;
      float sums[kLanes];
      vstore(sums, sum16(dots));
      for (int64_t j = 0; j < count; ++j) out[j] += sums[j];
    }
  }
}

// grad_tables[k, r] = sum over the tokens n in bucket r of table k of p[n, k] grad_y[n], in
// tiles of kWide output columns (threads own tiles). A tile of grad_y is first copied into a
// contiguous buffer (N x kWide, about L2-sized); then each bucket's tokens, in bucket order, are
// summed in registers and the row is written once, straight into the gradient (no zeroing, no
// read-modify-write). Wide tiles give each token read kWide / 16 neighbouring cache lines.
constexpr int64_t kWide = kTile, kWideVectors = kWide / kLanes;

void tables_grad(const float* g, const Buckets& buckets, float* grad_tables, int64_t N,
                 int64_t K, int64_t R, int64_t H) {
  const Items items((H + kWide - 1) / kWide, K);  // here chunks split the tables
  at::parallel_for(0, items.count, 1, [&](int64_t item0, int64_t item1) {
    std::vector<float> g_tile(N * kWide);
    int64_t copied = -1;  // the tile g_tile holds
    for (int64_t item = item0; item < item1; ++item) {
      const int64_t tile = item / items.chunks, chunk = item % items.chunks;
      const int64_t t0 = tile * kWide, width = std::min(kWide, H - t0);
      if (tile != copied) {
        for (int64_t n = 0; n < N; ++n) {
          for (int64_t v = 0; v < kWideVectors; ++v) {
            vstore(g_tile.data() + n * kWide + v * kLanes,
                   vload_part(g + n * H + t0 + v * kLanes, width - v * kLanes));
          }
        }
        copied = tile;
      }
      const int64_t k_end = std::min(K, (chunk + 1) * items.chunk_size);
      for (int64_t k = chunk * items.chunk_size; k < k_end; ++k) {
        const int32_t* start = buckets.start.data() + k * (R + 1);
        const int32_t* order = buckets.order.data() + k * N;
        const float* weight = buckets.weight.data() + k * N;
        for (int64_t r = 0; r < R; ++r) {
          Vec acc[kWideVectors];
          for (auto& a : acc) a = vzero();
          for (int32_t i = start[r]; i < start[r + 1]; ++i) {
            const Vec w = vset(weight[i]);
            const float* row = g_tile.data() + order[i] * kWide;
            for (int64_t v = 0; v < kWideVectors; ++v) {
              acc[v] = vfma(w, vload(row + v * kLanes), acc[v]);
            }
          }
          float* out = grad_tables + (k * R + r) * H + t0;
          for (int64_t v = 0; v < kWideVectors; ++v) {
            vstore_part(out + v * kLanes, acc[v], width - v * kLanes);
          }
        }
      }
    }
  });
}

// Both gradients: grad_p token by token over narrow tiles of the tables (as the forward), then
// the tables' gradient over wide tiles of grad_y.
std::vector<at::Tensor> gather_backward(const at::Tensor& grad_y, const at::Tensor& rows,
                                        const at::Tensor& p, const at::Tensor& tables,
                                        bool want_p, bool want_tables) {
  check_float(grad_y, "grad_y");
  check_float(p, "p");
  check_float(tables, "tables");
  const int64_t N = rows.size(0), K = tables.size(0), R = tables.size(1), H = tables.size(2);
  const int32_t* rp = rows.data_ptr<int32_t>();
  const float* g = grad_y.data_ptr<float>();
  at::Tensor grad_p, grad_tables;
  if (want_p) {
    // Threads own token ranges and walk every tile, so each writes only its own rows of grad_p.
    const Tiling<float> tl(K, R, H);
    constexpr int64_t W = Tiling<float>::W;
    grad_p = at::zeros({N, K}, grad_y.options());
    const float* tab = tables.data_ptr<float>();
    float* gp = grad_p.data_ptr<float>();
    const int64_t chunk = (N + at::get_num_threads() - 1) / at::get_num_threads();
    at::parallel_for(0, N, std::max<int64_t>(chunk, 1), [&](int64_t n0, int64_t n1) {
      float* slice = slice_buffer(tl);
      for (int64_t tile = 0; tile < tl.tiles; ++tile) {
        for (int64_t k0 = 0; k0 < K; k0 += tl.G) {
          const int64_t k1 = std::min(K, k0 + tl.G);
          copy_slice(tab, slice, tl, tile, k0, k1);
          weights_grad_tile(g, rp, slice, gp, n0, n1, k0, k1, tl, tile * W, tl.width(tile));
        }
      }
    });
  }
  if (want_tables) {
    const Buckets buckets(rp, p.data_ptr<float>(), N, K, R);
    grad_tables = at::empty({K, R, H}, grad_y.options());
    tables_grad(g, buckets, grad_tables.data_ptr<float>(), N, K, R, H);
  }
  return {grad_p, grad_tables};
}

// Bytes per second one thread reads from a buffer of `bytes` it reads again and again (sized to
// a cache level, this is that level's read bandwidth): eight independent sums of whole cache
// lines, the best of `repeats` passes. The bench divides the memory layer's row reads by it.
double read_bandwidth(int64_t bytes, int64_t passes, int64_t repeats) {
  constexpr int64_t kSums = 8;  // independent adds in flight: more than the add's latency
  const int64_t step = kSums * kLanes;
  const int64_t n = std::max<int64_t>(bytes / sizeof(float) / step, 1) * step;
  std::vector<float> buffer(n, 1.f);
  double best = 0.0;
  float sink = 0.f;
  for (int64_t repeat = 0; repeat < repeats; ++repeat) {
    const auto start = std::chrono::steady_clock::now();
    for (int64_t pass = 0; pass < passes; ++pass) {
      Vec acc[kSums];
      for (auto& a : acc) a = vzero();
      for (int64_t i = 0; i < n; i += step) {
        for (int64_t j = 0; j < kSums; ++j) acc[j] = vadd(acc[j], vload(buffer.data() + i + j * kLanes));
      }
      for (int64_t j = 1; j < kSums; ++j) acc[0] = vadd(acc[0], acc[j]);
      sink += vsum(acc[0]);
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, static_cast<double>(n * sizeof(float) * passes) / seconds);
  }
  TORCH_CHECK(sink > 0.f, "read_bandwidth: the sums were lost");  // keeps the loads alive
  return best;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("hash_forward", &hash_forward, "(N, K, b) -> rows (N, K) int32, p (N, K)");
  m.def("hash_backward", &hash_backward, "grad of p with respect to h");
  m.def("gather_forward", &gather_forward, "y (N, H) = sum_k p tables[k, rows]");
  m.def("gather_backward", &gather_backward, "grad_p (N, K), grad_tables (K, R, H)");
  m.def("read_bandwidth", &read_bandwidth, "bytes/s one thread reads from a buffer of `bytes`");
}
