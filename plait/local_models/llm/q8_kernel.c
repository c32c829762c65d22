// y[M,N] = x[M,K] @ W[N,K]^T for W as int8 in groups of 32 with one float scale each (GGUF's Q8_0):
// the activations are quantized to int8 per group of 32 as well (llama.cpp's Q8_0 x Q8_0 dot), and
// each group's 32 products are summed by one AVX-512 VNNI instruction (vpdpbusd, unsigned x signed:
// |w| against x with w's sign). Used for the logits (49,152 x 576 for SmolLM2), which torch can only
// do as two int4 matmuls: twice the instructions and 18% more bytes. Built by q8_kernel.py.
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>

#define G 32

static inline float hsum(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}

// x (M rows of K floats) -> xq (int8, rounded to nearest) with one scale per group: x ~ xs * xq
static void quantize_rows(const float *x, int M, int K, int8_t *xq, float *xs) {
    const int ng = K / G;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int r = 0; r < M; r++) {
        for (int g = 0; g < ng; g++) {
            const float *v = x + (size_t)r * K + g * G;
            __m256 a0 = _mm256_loadu_ps(v), a1 = _mm256_loadu_ps(v + 8), a2 = _mm256_loadu_ps(v + 16),
                   a3 = _mm256_loadu_ps(v + 24);
            __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, a0), _mm256_andnot_ps(sign, a1)),
                                      _mm256_max_ps(_mm256_andnot_ps(sign, a2), _mm256_andnot_ps(sign, a3)));
            __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
            m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
            const float d = _mm_cvtss_f32(m4) / 127.0f;
            const __m256 mul = _mm256_set1_ps(d > 0.0f ? 1.0f / d : 0.0f);
            __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(a0, mul)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(a1, mul)),
                    i2 = _mm256_cvtps_epi32(_mm256_mul_ps(a2, mul)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(a3, mul));
            // 32 int32 -> 32 int8, in order (the packs interleave 128-bit lanes; the permute undoes it)
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
            p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(xq + (size_t)r * K + g * G), p);
            xs[(size_t)r * ng + g] = d;
        }
    }
}

// Returns 0, or -1 when K is not a multiple of 32 or memory ran out (y untouched).
int q8_matmul(const float *x, float *y, int M, int N, int K, const int8_t *w, const float *scale) {
    if (K % G != 0 || M <= 0 || N <= 0) return -1;
    const int ng = K / G;
    int8_t *xq = aligned_alloc(64, ((size_t)M * K + 63) / 64 * 64);
    float *xs = malloc(sizeof(float) * (size_t)M * ng);
    if (!xq || !xs) { free(xq); free(xs); return -1; }
    quantize_rows(x, M, K, xq, xs);
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const int8_t *wr = w + (size_t)n * K;
        const float *dr = scale + (size_t)n * ng;
        for (int r = 0; r < M; r++) {
            const int8_t *xr = xq + (size_t)r * K;
            const float *xsr = xs + (size_t)r * ng;
            __m256 acc = _mm256_setzero_ps();
            for (int g = 0; g < ng; g++) {
                __m256i wv = _mm256_loadu_si256((const __m256i *)(wr + g * G));
                __m256i xv = _mm256_loadu_si256((const __m256i *)(xr + g * G));
                __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(wv, wv),
                                                _mm256_sign_epi8(xv, wv));
                acc = _mm256_fmadd_ps(_mm256_set1_ps(dr[g] * xsr[g]), _mm256_cvtepi32_ps(s), acc);
            }
            y[(size_t)r * N + n] = hsum(acc);
        }
    }
    free(xq);
    free(xs);
    return 0;
}
