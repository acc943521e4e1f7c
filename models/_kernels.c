/* The compiled loops behind models/_kernels.py (see there): plain C99, float64, no allocation. Compiled on first
 * use with the machine's C compiler and cached. Rows (or columns, or elements) are shared among `threads` OpenMP
 * threads; each is computed by one thread in a fixed order, so the results do not depend on the number of threads.
 * The simd pragmas ask for vectorised reductions. Without OpenMP (-fopenmp-simd only) every loop runs in the
 * calling thread.
 *
 * Arrays are C-contiguous; (n, K) arrays are row-major, element (i, k) at [i * K + k]. Index arrays are int64.
 */
#include <math.h>
#include <stdint.h>

/* Below this, digamma and lgamma are moved up by the recurrence to z = x + 8 >= 8, where Stirling's series
 * (seven terms; the first left out term is below 2e-15 of the value) is exact to double precision. */
#define SHIFT 8.0
#define HALF_LOG_2PI 0.91893853320467274178 /* log(2 pi) / 2 */

/* Elementwise, for x < 8: z = x + 8, p = x (x + 1) ... (x + 7) and q = p' / p (p' = dp/dx), so that, by
 * Gamma(x + 1) = x Gamma(x) applied eight times, digamma(x) = digamma(z) - q and lgamma(x) = lgamma(z) - log p;
 * for x >= 8: z = x, p = 1, q = 0. (Branch-free, so that it vectorises.) */
void shift_up(int threads, int64_t size, const double *restrict x, double *restrict z, double *restrict q,
              double *restrict p)
{
#pragma omp parallel for simd num_threads(threads) schedule(static)
    for (int64_t i = 0; i < size; i++) {
        double xi = x[i], zi = xi, pi = 1.0, dpi = 0.0;
        for (int j = 0; j < 8; j++) { /* p <- p (x + j), p' <- p' (x + j) + p */
            dpi = dpi * zi + pi;
            pi = pi * zi;
            zi += 1.0;
        }
        int small = xi < SHIFT;
        z[i] = small ? zi : xi;
        p[i] = small ? pi : 1.0;
        q[i] = small ? dpi / pi : 0.0;
    }
}

/* Stirling's series at z >= 8, given log z (B: Bernoulli numbers, j = 1..7):
 *   digamma(z) = log z - 1 / (2z) - sum_j B_2j / (2j z^2j)
 *   lgamma(z)  = (z - 1/2) log z - z + log(2 pi) / 2 + sum_j B_2j / (2j (2j - 1) z^(2j - 1)) */
static inline double stirling_digamma(double z, double log_z)
{
    double r = 1.0 / z, r2 = r * r;
    return log_z - 0.5 * r - r2 * (1.0 / 12 - r2 * (1.0 / 120 - r2 * (1.0 / 252 - r2 * (
        1.0 / 240 - r2 * (1.0 / 132 - r2 * (691.0 / 32760 - r2 / 12.0))))));
}

static inline double stirling_lgamma(double z, double log_z)
{
    double r = 1.0 / z, r2 = r * r;
    return (z - 0.5) * log_z - z + HALF_LOG_2PI + r * (1.0 / 12 - r2 * (1.0 / 360 - r2 * (1.0 / 1260 - r2 * (
        1.0 / 1680 - r2 * (1.0 / 1188 - r2 * (691.0 / 360360 - r2 / 156.0))))));
}

/* digamma(x) and lgamma(x) elementwise from the terms of shift_up (log z and log p taken by the caller). */
void digamma_lgamma(int threads, int64_t size, const double *restrict z, const double *restrict q,
                    const double *restrict log_z, const double *restrict log_p, double *restrict dg, double *restrict lg)
{
#pragma omp parallel for simd num_threads(threads) schedule(static)
    for (int64_t i = 0; i < size; i++) {
        dg[i] = stirling_digamma(z[i], log_z[i]) - q[i];
        lg[i] = stirling_lgamma(z[i], log_z[i]) - log_p[i];
    }
}

/* For q(t_ik) = Ga(x_ik, rate_k), x (n, K), with the shift_up terms of x: per row i,
 *   El_ik = digamma(x_ik) - log_rate_k            (E[log t_ik])
 *   shift_i = max_k El_ik, El_shifted_ik = El_ik - shift_i
 *   kl_rows_i = sum_k (x_ik - a) digamma(x_ik) - lgamma(x_ik)   (the shape terms of KL(q || Ga(a, b))) */
void gamma_log_terms(int threads, int64_t n, int64_t K, const double *restrict x, const double *restrict z,
                     const double *restrict q, const double *restrict log_z, const double *restrict log_p,
                     const double *restrict log_rate, double a, double *restrict El, double *restrict El_shifted,
                     double *restrict shift, double *restrict kl_rows)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const int64_t o = i * K;
        double top = -INFINITY, kl = 0.0;
#pragma omp simd reduction(max:top) reduction(+:kl)
        for (int64_t k = 0; k < K; k++) {
            double dg = stirling_digamma(z[o + k], log_z[o + k]) - q[o + k];
            double lg = stirling_lgamma(z[o + k], log_z[o + k]) - log_p[o + k];
            El[o + k] = dg - log_rate[k];
            top = El[o + k] > top ? El[o + k] : top;
            kl += (x[o + k] - a) * dg - lg;
        }
        for (int64_t k = 0; k < K; k++)
            El_shifted[o + k] = El[o + k] - top;
        shift[i] = top;
        kl_rows[i] = kl;
    }
}

/* Per row n of the pattern in CSR (crow (N + 1), cols (nnz)), A (N, K), B (M, K):
 *   S_nm = A_n . B_m, ratio_nm = x_nm / S_nm at the nonzeros (row-major order), c_row_n = A_n * sum_m ratio_nm B_m */
void allocation_rows(int threads, int64_t N, int64_t K, const int64_t *restrict crow, const int64_t *restrict cols,
                     const double *restrict x, const double *restrict A, const double *restrict B, double *restrict S,
                     double *restrict ratio, double *restrict c_row)
{
#pragma omp parallel for num_threads(threads) schedule(dynamic, 16)
    for (int64_t n = 0; n < N; n++) {
        const double *restrict A_n = A + n * K;
        double *restrict c_n = c_row + n * K;
        for (int64_t k = 0; k < K; k++)
            c_n[k] = 0.0;
        for (int64_t j = crow[n]; j < crow[n + 1]; j++) {
            const double *restrict B_m = B + cols[j] * K;
            double s = 0.0;
#pragma omp simd reduction(+:s)
            for (int64_t k = 0; k < K; k++)
                s += A_n[k] * B_m[k];
            S[j] = s;
            double r = x[j] / s;
            ratio[j] = r;
            for (int64_t k = 0; k < K; k++)
                c_n[k] += r * B_m[k];
        }
        for (int64_t k = 0; k < K; k++)
            c_n[k] *= A_n[k];
    }
}

/* Per column m of the pattern in CSC (ccol (M + 1), rows_t (nnz); entry j in column-major order is entry perm[j]
 * of the row-major order): c_col_m = B_m * sum_n ratio_nm A_n. */
void allocation_cols(int threads, int64_t M, int64_t K, const int64_t *restrict ccol, const int64_t *restrict rows_t,
                     const int64_t *restrict perm, const double *restrict ratio, const double *restrict A,
                     const double *restrict B, double *restrict c_col)
{
#pragma omp parallel for num_threads(threads) schedule(dynamic, 16)
    for (int64_t m = 0; m < M; m++) {
        const double *restrict B_m = B + m * K;
        double *restrict c_m = c_col + m * K;
        for (int64_t k = 0; k < K; k++)
            c_m[k] = 0.0;
        for (int64_t j = ccol[m]; j < ccol[m + 1]; j++) {
            const double *restrict A_n = A + rows_t[j] * K;
            double r = ratio[perm[j]];
            for (int64_t k = 0; k < K; k++)
                c_m[k] += r * A_n[k];
        }
        for (int64_t k = 0; k < K; k++)
            c_m[k] *= B_m[k];
    }
}
