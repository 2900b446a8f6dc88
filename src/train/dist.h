/* Data-parallel processes: the only interface to MPI. dist_mpi.c (built
 * when OpenMPI is installed, or with make MPI=1) talks to MPI when the
 * process was started by mpirun; dist_none.c (make MPI=0) is a world of one.
 * Nothing else includes mpi.h. Every call but dist_rank/dist_size is
 * collective: all processes make it, in the same order. */
#ifndef TLB_DIST_H
#define TLB_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

/* Joins the processes mpirun started (MPI_Init_thread, FUNNELED: only the
 * main thread calls MPI). A process not started by a launcher stays a world
 * of one and never initialises MPI. Fails when a launcher started several
 * processes and this build has no MPI (they would train side by side). */
int dist_init(int *argc, char ***argv, tlb_error *err);
void dist_finalize(void);

int dist_rank(void);
int dist_size(void);
/* "mpi" when this build can run data parallel, else "none". */
const char *dist_backend(void);

/* In-place sums across processes (MPI_Allreduce). For two processes the
 * sum is a + b on both, exactly (float addition commutes). */
int dist_sum_floats(float *buf, size_t n, tlb_error *err);
int dist_sum_doubles(double *buf, int n, tlb_error *err);
/* In-place maximum across processes. */
int dist_max_ints(int *buf, int n, tlb_error *err);
/* Rank 0's bytes to every process. */
int dist_broadcast(void *buf, size_t bytes, tlb_error *err);
/* *same = 1 when every process passed the same value. */
int dist_agree_u64(uint64_t value, int *same, tlb_error *err);
/* Ends every process at once (MPI_Abort) with this status: for a failure on
 * one rank while the others may wait in a collective. */
_Noreturn void dist_abort(int status);

#endif
