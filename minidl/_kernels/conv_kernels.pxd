# cython: language_level=3
# The C convolution kernels of conv_kernels.h, declared once for conv.pyx and program.pyx.

cdef extern from "conv_kernels.h" nogil:
    # Every size, stride, offset and count is a Py_ssize_t (ptrdiff_t in C): never narrowed.
    void conv_direct_f32_rows(const float *x, Py_ssize_t Wp, const Py_ssize_t *step_off,
                              Py_ssize_t nsteps, Py_ssize_t block_steps, const float *wpk,
                              Py_ssize_t ocb, Py_ssize_t oc_valid, const float *bias, int relu,
                              float *out, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t row0,
                              Py_ssize_t row1, const Py_ssize_t *clip)
    void conv_packed_f32_pixels(const float *x, Py_ssize_t Wp, Py_ssize_t sh, Py_ssize_t sw,
                                const Py_ssize_t *step_off, Py_ssize_t nsteps, const float *wpk,
                                Py_ssize_t nb, Py_ssize_t oc_valid, const float *bias, int relu,
                                float *out, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t p0,
                                Py_ssize_t p1, Py_ssize_t row_kw)
    void conv_dw_packed_f32(const float *x, Py_ssize_t x_img, const float *gt, Py_ssize_t g_img,
                            Py_ssize_t nimg, const Py_ssize_t *pix_in, Py_ssize_t P,
                            Py_ssize_t ocp, Py_ssize_t KW, Py_ssize_t dw, float *dwp,
                            Py_ssize_t dw_o_stride, Py_ssize_t oc_valid)
    void conv_db_packed_f32(const float *gt, Py_ssize_t g_img, Py_ssize_t nimg, Py_ssize_t P,
                            Py_ssize_t ocp, float *db, Py_ssize_t oc_valid)
    void conv_transpose_grad_f32(const float *g, const float *mask, Py_ssize_t OC, Py_ssize_t P,
                                 Py_ssize_t ocp, float *gt)
    int conv_dw_f32_tb(Py_ssize_t KW)
    int conv_packed_nb(Py_ssize_t oc)
    void conv_col_range(Py_ssize_t iw0, Py_ssize_t sw, Py_ssize_t W, Py_ssize_t OW, Py_ssize_t *lo,
                        Py_ssize_t *hi)
    void conv_pad_phases_f32(const float *src, Py_ssize_t H, Py_ssize_t W, const float *mask,
                             float *dst, Py_ssize_t Hp, Py_ssize_t Wp, Py_ssize_t top,
                             Py_ssize_t left, Py_ssize_t sh, Py_ssize_t sw)
    void conv_unphase_f32(const float *base, const Py_ssize_t *off, const Py_ssize_t *size,
                          const Py_ssize_t *pitch, Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t H,
                          Py_ssize_t W, Py_ssize_t sh, Py_ssize_t sw, float *dst)
    float conv_sum_f32(const float *p, Py_ssize_t n)
    void conv_im2col_f32(const float *x, float *col, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                         Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
                         Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                         Py_ssize_t dh, Py_ssize_t dw)
    void conv_col2im_f32(const float *col, float *x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                         Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
                         Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                         Py_ssize_t dh, Py_ssize_t dw)
    void conv_prefetch_image(const float *src, const float *mask, const float *out,
                             Py_ssize_t img, Py_ssize_t oimg, Py_ssize_t part, Py_ssize_t parts)
    enum: CONV_DX_IMAGES_CB
    Py_ssize_t conv_dx_images_scratch(Py_ssize_t C, Py_ssize_t OC, Py_ssize_t OH, Py_ssize_t OW,
                                      Py_ssize_t H, Py_ssize_t W)
    void conv_dx_images_group(const float *g, const float *mask, const float *wpk, float *gx,
                              float *scratch, Py_ssize_t n0, Py_ssize_t nimg, Py_ssize_t C,
                              Py_ssize_t OC, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t KH,
                              Py_ssize_t KW, Py_ssize_t H, Py_ssize_t W, Py_ssize_t ph,
                              Py_ssize_t pw)

    enum: CONV_DW_CHUNK
    ctypedef struct conv_dw_rows_job:
        const float *x
        const float *g
        const float *mask
        float *partial_w
        float *partial_b
        Py_ssize_t N, C, H, W, OC, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw
        Py_ssize_t Hp, Wp, plane, nv, g_plane, ocb, ocp, copy_g, scratch_floats
        Py_ssize_t nchunks, parts
    void conv_dw_rows_plan(conv_dw_rows_job *a, int masked)
    Py_ssize_t conv_dw_rows_items(conv_dw_rows_job *a, int n_threads)
    void conv_dw_rows_item(const conv_dw_rows_job *a, Py_ssize_t item, float *scratch)
    ctypedef struct conv_dw_rows_run:
        conv_dw_rows_job a
        float *scratch
    void conv_dw_rows_task(void *args, Py_ssize_t begin, Py_ssize_t end, int worker) noexcept
