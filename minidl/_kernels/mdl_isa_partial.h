/* MDL_STORE_PARTIAL(p, v, count): the first `count` (1 .. MDL_VL - 1) floats of the register v
 * to p, writing nothing else (a row may end a plane, or a memory-mapped file). Included by the
 * kernel bodies, once per instance: no include guard on purpose. One masked store on AVX-512;
 * 16-, 8- and 4-byte pieces on AVX2 and SSE2 (AVX2's masked store costs ~10 cycles on AMD Zen
 * 3); element copies elsewhere. */
#undef MDL_STORE_PARTIAL
/* The first count (0 .. 3) floats of the xmm register r to q (q is advanced). */
#undef MDL_STORE_PARTIAL_XMM
#define MDL_STORE_PARTIAL_XMM(q, r, count)                                                       \
    do {                                                                                         \
        __m128 x_ = (r);                                                                         \
        if ((count) & 2) {                                                                       \
            _mm_storel_pi((__m64 *)(q), x_);                                                     \
            x_ = _mm_movehl_ps(x_, x_);                                                          \
            (q) += 2;                                                                            \
        }                                                                                        \
        if ((count) & 1)                                                                         \
            _mm_store_ss((q), x_);                                                               \
    } while (0)
#if MDL_ISA_AVX512
#define MDL_STORE_PARTIAL(p, v, count)                                                             \
    _mm512_mask_storeu_ps((p), (__mmask16)((1u << (count)) - 1u), (__m512)(v))
#elif MDL_VL == 8
#define MDL_STORE_PARTIAL(p, v, count)                                                           \
    do {                                                                                         \
        __m128 r_ = _mm256_castps256_ps128((__m256)(v));                                         \
        float *q_ = (p);                                                                         \
        if ((count) & 4) {                                                                       \
            _mm_storeu_ps(q_, r_);                                                               \
            r_ = _mm256_extractf128_ps((__m256)(v), 1);                                          \
            q_ += 4;                                                                             \
        }                                                                                        \
        MDL_STORE_PARTIAL_XMM(q_, r_, (count) & 3);                                              \
    } while (0)
#elif MDL_VL == 4 && defined(__SSE2__)
#define MDL_STORE_PARTIAL(p, v, count)                                                           \
    do {                                                                                         \
        float *q_ = (p);                                                                         \
        MDL_STORE_PARTIAL_XMM(q_, (__m128)(v), (count));                                         \
    } while (0)
#else
#define MDL_STORE_PARTIAL(p, v, count)                                                             \
    do {                                                                                           \
        float tmp_[MDL_VL] __attribute__((aligned(64)));                                           \
        memcpy(tmp_, &(v), sizeof tmp_);                                                           \
        for (int i_ = 0; i_ < (count); i_++)                                                       \
            (p)[i_] = tmp_[i_];                                                                    \
    } while (0)
#endif
