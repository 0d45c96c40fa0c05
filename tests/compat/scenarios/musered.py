"""A musered-style wrapper around cpl.Recipe: the recipe path and logging
from an esorex.rc read by cpl.esorex.init(); a class per recipe that
keeps extra keywords (musered's name=) and passes them through to the
call; parameters dumped with dict(iter(recipe.param)); the warnings and
the CPU time of the results logged; a MUSE bias then a dark with the
MASTER_BIAS as calibration (one IFU, tiny synthetic frames)."""
import os
import warnings

import cpl
from outcome import config, listing, record, result

steps = config['steps']
os.makedirs(os.path.expanduser('~/.esorex'))
with open(os.path.expanduser('~/.esorex/esorex.rc'), 'w') as f:
    f.write('esorex.caller.recipe-dir=%s\n'
            'esorex.caller.msg-level=off\n'
            'esorex.caller.log-level=info\n'
            'esorex.caller.log-dir=%s\n'
            'esorex.caller.log-file=musered.log\n'
            % (config['pipeline_dirs']['muse'], os.getcwd()))
cpl.esorex.init()


class MuseRecipe:
    """One MUSE recipe, run on a list of raw files."""

    recipe_name = None
    tag = None
    default_params = {'nifu': 1, 'merge': False}

    def __init__(self, output_dir, **call_keywords):
        self._recipe = cpl.Recipe(self.recipe_name)
        self.output_dir = output_dir
        self.call_keywords = call_keywords
        self.param = self._recipe.param
        self.calib = self._recipe.calib
        self.journal = {}

    def run(self, raw, calib=None, name=None, **kwargs):
        keywords = dict(self.call_keywords, **kwargs)
        results = self._recipe(raw={self.tag: raw}, calib=calib or {},
                               param=dict(self.default_params),
                               output_dir=self.output_dir, name=name,
                               **keywords)
        self.journal = {
            'params': dict(iter(self.param)),
            'warnings': results.log.warning,
            'user_time': type(results.stat.user_time).__name__,
            'name': name}
        return results


class MuseBias(MuseRecipe):
    recipe_name = 'muse_bias'
    tag = 'BIAS'


class MuseDark(MuseRecipe):
    recipe_name = 'muse_dark'
    tag = 'DARK'


with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    bias = MuseBias('masters', version_of_night='2026-12-01')
    bias_results = bias.run(steps['muse_bias']['raw'], name='bias-night1')
    record('bias', result(bias_results))
    record('bias journal', bias.journal)
    dark = MuseDark('masters')
    dark.param.nifu = 1
    dark_results = dark.run(steps['muse_dark']['raw'], name='dark-night1',
                            calib={'MASTER_BIAS':
                                   bias_results.MASTER_BIAS})
    record('dark', result(dark_results))
    record('dark journal', dark.journal)
record('python warnings', sorted({w.category.__name__ for w in caught}))
record('output_dir', listing('masters'))
with open('musered.log') as f:
    record('log file has both recipes', sorted(
        {name for line in f for name in ('muse_bias', 'muse_dark')
         if 'cpl.' + name in line}))
