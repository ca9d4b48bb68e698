// scratchnet's CUDA kernels, compiled at run time by NVRTC. Each mirrors a
// CPU function (named in its comment) and uses the same formulas, random
// numbers and dropout masks, so GPU and CPU runs agree to rounding.
// Indices are 64-bit: a full batch is 50,000 x 784 = 39 M elements.

typedef unsigned long long u64;
typedef long long i64;

// nn::dropout::mix64 (SplitMix64's finaliser).
__device__ u64 mix64(u64 z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// nn::dropout::uniform.
__device__ float uniform01(u64 key, u64 i) {
    return (float)(mix64(key ^ (i * 0x9e3779b97f4a7c15ULL)) >> 40) * (1.0f / 16777216.0f);
}

// The dropout scale of (row r, column c): nn::dropout::fill_mask. mode 0 is
// no dropout, 1 one mask row for all samples, 2 a mask row per sample.
__device__ float drop_scale(int mode, u64 key, i64 r, int c, int width, float keep) {
    if (mode == 0 || keep >= 1.0f) return 1.0f;
    u64 i = mode == 1 ? (u64)c : (u64)(r * width + c);
    return uniform01(key, i) < keep ? 1.0f / keep : 0.0f;
}

// nn::activation::fast_tanh.
__device__ float fast_tanh(float x) {
    x = fminf(fmaxf(x, -7.905311f), 7.905311f);
    float x2 = x * x;
    float p = -2.7607685e-16f;
    p = p * x2 + 2.000188e-13f;
    p = p * x2 - 8.604672e-11f;
    p = p * x2 + 5.122297e-8f;
    p = p * x2 + 1.4857224e-5f;
    p = p * x2 + 6.3726193e-4f;
    p = p * x2 + 4.8935246e-3f;
    p *= x;
    float q = 1.1982584e-6f;
    q = q * x2 + 1.185347e-4f;
    q = q * x2 + 2.2684347e-3f;
    q = q * x2 + 4.893525e-3f;
    return p / q;
}

#define INDEX(n) i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; if (i >= (n)) return;

// nn::activation::forward_rows: z = act(z + bias) * scale. act: 0 none,
// 1 relu, 2 tanh, per column.
extern "C" __global__ void bias_act_forward(float* z, const float* bias, const int* act,
        const float* keep, i64 rows, int width, int mode, u64 key) {
    INDEX(rows * width)
    int c = (int)(i % width);
    float v = z[i] + bias[c];
    if (act[c] == 1) v = fmaxf(v, 0.0f);
    else if (act[c] == 2) v = fast_tanh(v);
    z[i] = v * drop_scale(mode, key, i / width, c, width, keep[c]);
}

// nn::activation::backward_rows: dA -> dZ in place, from the outputs a.
extern "C" __global__ void act_backward(float* d, const float* a, const int* act,
        const float* keep, i64 rows, int width, int mode, u64 key) {
    INDEX(rows * width)
    int c = (int)(i % width);
    float k = mode == 0 ? 1.0f : keep[c];
    float s = drop_scale(mode, key, i / width, c, width, k);
    float av = a[i];
    if (act[c] == 1) d[i] = av > 0.0f ? d[i] * s : 0.0f;
    else if (act[c] == 2) d[i] *= s - av * av * k;
}

// nn::softmax_ce::loss_and_grad, one thread per row: logits become
// (p - onehot) * scale; the row's -log(p_y + 1e-7) goes to loss[row].
extern "C" __global__ void softmax_ce(float* z, const unsigned char* labels, i64 rows,
        int classes, float scale, double* loss) {
    INDEX(rows)
    float* row = z + i * classes;
    float m = row[0];  // (NVRTC has no INFINITY macro)
    for (int c = 1; c < classes; c++) m = fmaxf(m, row[c]);
    float sum = 0.0f;
    for (int c = 0; c < classes; c++) { row[c] = expf(row[c] - m); sum += row[c]; }
    float inv = 1.0f / sum;
    for (int c = 0; c < classes; c++) row[c] *= inv;
    int y = labels[i];
    loss[i] = -log((double)(row[y] + 1e-7f));
    row[y] -= 1.0f;
    for (int c = 0; c < classes; c++) row[c] *= scale;
}

// 1 for each non-finite parameter (the trainer's divergence check).
extern "C" __global__ void non_finite(const float* p, i64 n, double* out) {
    INDEX(n)
    out[i] = isfinite(p[i]) ? 0.0 : 1.0;
}

// out[0] = sum of x[0..n), in one block of 1024 threads: a fixed order, so
// the same every run.
extern "C" __global__ void sum_f64(const double* x, i64 n, double* out) {
    __shared__ double part[1024];
    double s = 0.0;
    for (i64 i = threadIdx.x; i < n; i += blockDim.x) s += x[i];
    part[threadIdx.x] = s;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w /= 2) {
        if ((int)threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[0] = part[0];
}

// The L2 term for one weight tensor (optim::Decay, which the CPU adds inside
// its update): g += k p.
extern "C" __global__ void add_scaled(float* g, const float* p, float k, i64 n) {
    INDEX(n)
    g[i] += k * p[i];
}

// optim::adam::update.
extern "C" __global__ void adam(float* p, const float* g, float* v, float* s, i64 n,
        float b1, float b2, float eps, float step, float inv_sqrt_c2) {
    INDEX(n)
    float gi = g[i];
    v[i] = b1 * v[i] + (1.0f - b1) * gi;
    s[i] = b2 * s[i] + (1.0f - b2) * gi * gi;
    p[i] -= step * v[i] / (sqrtf(s[i]) * inv_sqrt_c2 + eps);
}

// optim::sgd::Sgd::step.
extern "C" __global__ void sgd(float* p, const float* g, float* u, i64 n, float mu, float lr) {
    INDEX(n)
    u[i] = mu * u[i] + g[i];
    p[i] -= lr * u[i];
}

// data::batch::Batcher::get: row r of dst is image ids[r] of src moved by
// (dx[r], dy[r]) pixels (data::augment::shift_image), labels alongside.
extern "C" __global__ void gather_shift(float* dst, unsigned char* dst_labels,
        const float* src, const unsigned char* src_labels, const int* ids, const int* dx,
        const int* dy, i64 rows, int h, int w) {
    INDEX(rows * h * w)
    i64 r = i / (h * w);
    int y = (int)(i % (h * w)) / w, x = (int)(i % w);
    int sy = y - dy[r], sx = x - dx[r];
    const float* img = src + (i64)ids[r] * h * w;
    dst[i] = (sy >= 0 && sy < h && sx >= 0 && sx < w) ? img[sy * w + sx] : 0.0f;
    if (y == 0 && x == 0) dst_labels[r] = src_labels[ids[r]];
}
