#include "CKernels.h"
#include "Clones.h"

// eˣ: x = n·ln2 + r, |r| ≤ ½ln2, degree-7 Taylor polynomial (relative error < 3·10⁻⁷), 2ⁿ built
// in the exponent bits. Flushes to 0 below −87.3; saturates at e⁸⁸ above 88.
static inline float exp_approx(float x) {
    float clamped = x < -87.3f ? -87.3f : (x > 88.0f ? 88.0f : x);
    float n = __builtin_roundevenf(clamped * 1.44269504f);
    float r = (clamped - n * 0.693145752f) - n * 1.42860677e-6f;
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union { unsigned u; float f; } scale = {.u = (unsigned)((int)n + 127) << 23};
    return x < -87.3f ? 0.0f : p * scale.f;
}

// log(1 + y) for y in [0, 1]: 2·atanh(s), s = y/(2 + y) ≤ ⅓, odd series to s¹³.
static inline float log1p_unit(float y) {
    float s = y / (2.0f + y);
    float s2 = s * s;
    float p = 1.0f / 13;
    p = p * s2 + 1.0f / 11;
    p = p * s2 + 1.0f / 9;
    p = p * s2 + 1.0f / 7;
    p = p * s2 + 1.0f / 5;
    p = p * s2 + 1.0f / 3;
    p = p * s2 + 1.0f;
    return 2.0f * s * p;
}

CLONES
float vae_bernoulli_nll(const float *restrict x, const float *restrict logits, float *restrict gradient,
                        float scale, size_t n) {
#pragma clang fp reassociate(on)
    float sum = 0.0f;
    if (gradient) {
        for (size_t i = 0; i < n; i++) {
            float l = logits[i], xi = x[i];
            float e = exp_approx(-__builtin_fabsf(l));
            sum += (l > 0.0f ? l : 0.0f) + log1p_unit(e) - xi * l;
            float inverse = 1.0f / (1.0f + e);
            gradient[i] = scale * ((l >= 0.0f ? inverse : e * inverse) - xi);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float l = logits[i];
            sum += (l > 0.0f ? l : 0.0f) + log1p_unit(exp_approx(-__builtin_fabsf(l))) - x[i] * l;
        }
    }
    return sum;
}

CLONES
float vae_squared_error(const float *restrict x, const float *restrict means, float *restrict gradient,
                        float scale, size_t n) {
#pragma clang fp reassociate(on)
    float sum = 0.0f;
    if (gradient) {
        for (size_t i = 0; i < n; i++) {
            float r = means[i] - x[i];
            sum += r * r;
            gradient[i] = scale * r;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float r = means[i] - x[i];
            sum += r * r;
        }
    }
    return sum;
}

CLONES
float vae_gaussian_pixel_nll(const float *restrict x, const float *restrict means, const float *restrict logSigmas,
                             float *restrict gradMeans, float *restrict gradLogSigmas, float scale, float minLogSigma,
                             size_t n) {
#pragma clang fp reassociate(on)
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float raw = logSigmas[i];
        float t = raw < minLogSigma ? minLogSigma : raw;
        float r = means[i] - x[i];
        float inverseVariance = exp_approx(-2.0f * t);
        float scaled = r * r * inverseVariance;
        sum += 0.5f * scaled + t;
        if (gradMeans) {
            gradMeans[i] = scale * r * inverseVariance;
            gradLogSigmas[i] = raw < minLogSigma ? 0.0f : scale * (1.0f - scaled);
        }
    }
    return sum;
}

CLONES
void vae_sigmoid(const float *restrict logits, float *restrict mean, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float l = logits[i];
        float e = exp_approx(-__builtin_fabsf(l));
        float inverse = 1.0f / (1.0f + e);
        mean[i] = l >= 0.0f ? inverse : e * inverse;
    }
}

CLONES
void vae_tanh(const float *restrict x, float *restrict y, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i], a = __builtin_fabsf(v);
        // |x| ≥ 0.3: (1 − t)/(1 + t), t = e^(−2|x|) ≤ 0.55, so the subtraction loses nothing;
        // below, the odd Taylor series to x¹¹ (the next term is under 6·10⁻¹⁰ there).
        float t = exp_approx(-2.0f * a);
        float large = (1.0f - t) / (1.0f + t);
        float x2 = v * v;
        float p = -1382.0f / 155925;
        p = p * x2 + 62.0f / 2835;
        p = p * x2 - 17.0f / 315;
        p = p * x2 + 2.0f / 15;
        p = p * x2 - 1.0f / 3;
        float small = a + a * x2 * p;
        float r = a < 0.3f ? small : large;
        y[i] = v != v ? v : (v < 0.0f ? -r : r);
    }
}

CLONES
void vae_tanh_backward(const float *restrict y, const float *restrict dy, float *restrict dx, size_t n) {
    for (size_t i = 0; i < n; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

CLONES
void vae_bytes_to_unit(const unsigned char *restrict bytes, float *restrict out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = (float)bytes[i] / 255.0f;
}
