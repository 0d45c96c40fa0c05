"""Recipe's class attributes and static methods: path, list,
get_recipefilename, get_libs, set_maxthreads, memory_mode; loading by
name, file name and version; what a wrong name or version raises."""
import os

import cpl
from outcome import attempt, config, record, type_name

recipe_dir = config['recipe_dir']

record('memory_mode default', cpl.Recipe.memory_mode)
record('path type', type_name(cpl.Recipe.path))

cpl.Recipe.path = recipe_dir          # a string is a path too
listed = cpl.Recipe.list()
record('list type', [type_name(listed)] + sorted({type_name(x) for x in listed}))
record('list', sorted((name, versions) for name, versions in listed))
cpl.Recipe.path = [recipe_dir]
record('list with a list path', sorted(cpl.Recipe.list()))
record('get_libs', sorted(os.path.basename(f) for f in cpl.Recipe.get_libs()))
library = cpl.Recipe.get_recipefilename('rtest_copy')
record('get_recipefilename', library)
record('get_recipefilename by version',
       cpl.Recipe.get_recipefilename('rtest_copy', 10203))
record('get_recipefilename by version string',
       cpl.Recipe.get_recipefilename('rtest_copy', '1.2.3'))
record('get_recipefilename unknown', cpl.Recipe.get_recipefilename('nope'))

attempt('set_maxthreads', cpl.Recipe.set_maxthreads, 4)
cpl.Recipe.set_maxthreads(65536)
cpl.Recipe.memory_mode = 0

by_file = cpl.Recipe('rtest_copy', filename=library)
record('by filename', [by_file.__name__, by_file.__file__, list(by_file.version)])
record('by version', list(cpl.Recipe('rtest_copy', version=10203).version))
record('by version string',
       list(cpl.Recipe('rtest_copy', version='1.2.3').version))
attempt('wrong version', cpl.Recipe, 'rtest_copy', version=99)
attempt('unknown recipe', cpl.Recipe, 'no_such_recipe')
record('repr', repr(cpl.Recipe('rtest_copy')))
record('threaded keyword', cpl.Recipe('rtest_copy', threaded=True).threaded)
attempt('dir', getattr, cpl.Recipe, 'dir')
linked = by_file.cpl_version
record('cpl_versions', {'types': sorted({type_name(v) for v in cpl.cpl_versions}),
                        'has the linked one': linked in cpl.cpl_versions})
record('cpl_versions count', len(cpl.cpl_versions))
record('module names', sorted(n for n in ('Recipe', 'Parameter', 'FrameConfig',
                                          'Result', 'CplError', 'RecipeCrash',
                                          'dfs', 'esorex', 'cpl_versions',
                                          '__version__', '__author__')
                              if hasattr(cpl, n)))
