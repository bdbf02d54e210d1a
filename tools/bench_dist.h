// petal bench allreduce [--bytes 4K,64K,...] [--iters I], under a launcher (mpirun -np N).
#pragma once

int bench_allreduce(int argc, char **argv);
