#include "runner.h"

#include <cpl.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    /* Reads CPL_MEMORY_MODE from the environment, which is why Python
     * starts one server per memory mode. */
    cpl_init(CPL_INIT_DEFAULT);
    /* Libraries talk while they load (version checks and the like); only
     * a run's own log is wanted, and that is set up per run. */
    cpl_msg_set_level(CPL_MSG_OFF);
    if (argc >= 2 && strcmp(argv[1], "describe") == 0) {
        return describe_main(argc - 2, argv + 2);
    }
    if (argc == 2 && strcmp(argv[1], "serve") == 0) {
        return serve_main();
    }
    fprintf(stderr, "usage: cplrun-runner describe FILE...\n"
                    "       cplrun-runner serve\n");
    return 2;
}
