/* A world of one: the build without MPI (make MPI=0, or OpenMPI absent). */
#include <stdlib.h>

#include "train/dist.h"

int dist_init(int *argc, char ***argv, tlb_error *err)
{
    (void)argc;
    (void)argv;
    /* Several copies started by mpirun would each train the whole run into
     * the same folder: refuse instead. */
    const char *size = getenv("OMPI_COMM_WORLD_SIZE");
    if (!size) size = getenv("PMI_SIZE");
    if (size && atoi(size) > 1)
        return tlb_fail(err, "started as one of %d MPI processes, but this tlb was built without MPI"
                             " (install libopenmpi-dev and rebuild, or make MPI=1)", atoi(size));
    return 0;
}

void dist_finalize(void) {}
int dist_rank(void) { return 0; }
int dist_size(void) { return 1; }
const char *dist_backend(void) { return "none"; }

int dist_sum_floats(float *buf, size_t n, tlb_error *err) { (void)buf; (void)n; (void)err; return 0; }
int dist_sum_doubles(double *buf, int n, tlb_error *err) { (void)buf; (void)n; (void)err; return 0; }
int dist_max_ints(int *buf, int n, tlb_error *err) { (void)buf; (void)n; (void)err; return 0; }
int dist_broadcast(void *buf, size_t bytes, tlb_error *err) { (void)buf; (void)bytes; (void)err; return 0; }

int dist_agree_u64(uint64_t value, int *same, tlb_error *err)
{
    (void)value;
    (void)err;
    *same = 1;
    return 0;
}

_Noreturn void dist_abort(int status) { exit(status); }
