/* dist.h over MPI (OpenMPI from Debian). The only file that includes mpi.h. */
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>

#include "train/dist.h"

static int initialised, rank, size = 1;

/* Started by a launcher (mpirun, srun): only then initialise MPI, so a plain
 * ./tlb run never starts OpenMPI's singleton machinery. */
static int launched(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

static int mpi_fail(tlb_error *err, const char *what, int code)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, msg, &len);
    return tlb_fail(err, "%s failed on rank %d of %d: %.*s", what, rank, size, len, msg);
}

int dist_init(int *argc, char ***argv, tlb_error *err)
{
    if (initialised || !launched()) return 0;
    int provided = 0;
    int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return tlb_fail(err, "MPI_Init_thread failed (error %d)", rc);
    initialised = 1;
    /* Errors come back as codes, to be reported with the rank that saw them. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    return 0;
}

void dist_finalize(void)
{
    if (initialised) MPI_Finalize();
    initialised = 0;
}

int dist_rank(void) { return rank; }
int dist_size(void) { return size; }
const char *dist_backend(void) { return "mpi"; }

int dist_sum_floats(float *buf, size_t n, tlb_error *err)
{
    if (size == 1) return 0;
    /* MPI counts are ints: a larger buffer goes in pieces. */
    for (size_t at = 0; at < n; at += INT_MAX) {
        const int k = n - at < INT_MAX ? (int)(n - at) : INT_MAX;
        const int rc = MPI_Allreduce(MPI_IN_PLACE, buf + at, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(err, "MPI_Allreduce of the gradients", rc);
    }
    return 0;
}

int dist_sum_doubles(double *buf, int n, tlb_error *err)
{
    if (size == 1) return 0;
    const int rc = MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(err, "MPI_Allreduce (sum)", rc);
}

int dist_max_ints(int *buf, int n, tlb_error *err)
{
    if (size == 1) return 0;
    const int rc = MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(err, "MPI_Allreduce (max)", rc);
}

int dist_broadcast(void *buf, size_t bytes, tlb_error *err)
{
    if (size == 1) return 0;
    for (size_t at = 0; at < bytes; at += INT_MAX) {
        const int k = bytes - at < INT_MAX ? (int)(bytes - at) : INT_MAX;
        const int rc = MPI_Bcast((char *)buf + at, k, MPI_BYTE, 0, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(err, "MPI_Bcast", rc);
    }
    return 0;
}

int dist_agree_u64(uint64_t value, int *same, tlb_error *err)
{
    *same = 1;
    if (size == 1) return 0;
    /* max(v) and max(~v) = ~min(v) in one reduction. */
    uint64_t v[2] = {value, ~value};
    const int rc = MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_fail(err, "MPI_Allreduce (agreement)", rc);
    *same = v[0] == ~v[1];
    return 0;
}

_Noreturn void dist_abort(int status)
{
    if (initialised) MPI_Abort(MPI_COMM_WORLD, status);
    exit(status);
}
