"""Products in an output_dir (cpl._products): a later call replaces an
earlier call's products, overlapping calls never clobber each other, all
or none, and the same on file systems without hard links (FAT)."""
from __future__ import annotations

import errno
import io
import fcntl
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from astropy.io import fits

import cpl
from cpl import _products
from conftest import REPO, wait_until



def listing(folder):
    """The files in folder, but the work folders' parent (left empty)."""
    names = sorted(os.listdir(folder))
    if '.cplrun-work' in names:
        assert os.listdir(os.path.join(folder, '.cplrun-work')) == []
        names.remove('.cplrun-work')
    return names


def param_value(header, name):
    """The value the product's header records for the parameter name (CPL
    records its alias, the last part of the full name)."""
    for key, value in header.items():
        if key.startswith('ESO PRO REC1 PARAM') and key.endswith('NAME') \
                and value == name:
            return header[key[:-4] + 'VALUE']
    raise KeyError(name)


def warnings_of(caplog):
    return [rec.getMessage() for rec in caplog.records
            if rec.levelno == logging.WARNING]


# --- a later call replaces ----------------------------------------------------------
def test_rerun_with_another_parameter_replaces_the_products(raw, tmp_path,
                                                            caplog):
    out = str(tmp_path / 'out')
    r = cpl.Recipe('rtest_params')
    r.tag = 'RAW'
    first = r(raw, output_dir=out, param={'int_value': 1})
    with caplog.at_level(logging.WARNING, logger='cpl'):
        second = r(raw, output_dir=out, param={'int_value': 2})
    assert first.PARAMS == second.PARAMS == os.path.join(
        out, 'rtest_params.fits')
    assert listing(out) == ['rtest_params.fits']
    header = fits.getheader(second.PARAMS)
    assert header['ESO QC INT_VALUE'] == 2
    assert header['PIPEFILE'] == 'rtest_params.fits'
    assert warnings_of(caplog) == []


def test_rerun_of_a_pipeline_recipe_replaces_its_products(data_dir, tmp_path,
                                                          system_path):
    folder, manifest = data_dir
    s = next(s for s in manifest['steps'] if s['recipe'] == 'uves_cal_mbias')
    raw = cpl.esorex.load_sof(s['sof'])['BIAS_BLUE']
    bias = cpl.Recipe('uves_cal_mbias')
    for option in s['options']:
        name, _, value = option[2:].partition('=')
        bias.param[name] = value
    out = str(tmp_path / 'out')
    names = []
    for method in ('median', 'mean'):
        res = bias(raw, tag='BIAS_BLUE', output_dir=out, timeout=120,
                   param={'stack_method': method})
        names.append(sorted(os.path.basename(p) for _t, p in res))
    assert names[0] == names[1] == sorted(s['expected_products'])
    assert listing(out) == names[0]
    for name in names[1]:
        header = fits.getheader(os.path.join(out, name))
        assert header['PIPEFILE'] == name
        assert param_value(header, 'stack_method') == 'MEAN'


def test_failed_rerun_keeps_the_products(raw, tmp_path):
    out = str(tmp_path / 'out')
    r = cpl.Recipe('rtest_error')
    r.tag = 'RAW'
    r(raw, output_dir=out, param={'fail': False})
    good = r(raw, output_dir=out, param={'fail': False}).ERROR_PRODUCT
    with open(good, 'rb') as f:
        content = f.read()
    with pytest.raises(cpl.CplError) as info:
        r(raw, output_dir=out, param={'fail': True})
    shutil.rmtree(info.value.workdir)
    assert listing(out) == ['rtest_error.fits']
    with open(good, 'rb') as f:
        assert f.read() == content


def fits_file(path, **header):
    hdu = fits.PrimaryHDU(np.zeros((2, 2), dtype=np.float32))
    hdu.header.update(header)
    hdu.writeto(path)


@pytest.mark.parametrize('header', [{'PIPEFILE': 'rtest_copy.fits'}, {}])
def test_a_product_there_before_the_call_is_replaced(raw, tmp_path, header):
    """As python-cpl and esorex do: a FITS file of the product's name,
    whose PIPEFILE (if any) is that name."""
    out = tmp_path / 'out'
    out.mkdir()
    fits_file(out / 'rtest_copy.fits', **header)
    res = cpl.Recipe('rtest_copy')(raw, output_dir=str(out))
    assert res.PRODUCT == str(out / 'rtest_copy.fits')
    assert np.array_equal(fits.getdata(res.PRODUCT), fits.getdata(raw))
    assert listing(str(out)) == ['rtest_copy.fits']


def test_what_is_not_a_product_of_that_name_is_kept(raw, tmp_path, caplog):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'rtest_copy.fits').write_bytes(b'not FITS')
    fits_file(out / 'rtest_copy-1.fits', PIPEFILE='other.fits')
    before = {n: (out / n).read_bytes() for n in os.listdir(out)}
    with caplog.at_level(logging.WARNING, logger='cpl'):
        path = cpl.Recipe('rtest_copy')(raw, output_dir=str(out)).PRODUCT
    assert path == str(out / 'rtest_copy-2.fits')
    assert {n: (out / n).read_bytes() for n in before} == before
    assert fits.getheader(path)['PIPEFILE'] == 'rtest_copy-2.fits'
    assert any('not a product of that name' in m for m in warnings_of(caplog))


def test_a_product_that_is_an_input_of_the_call_is_kept(raw, tmp_path):
    out = str(tmp_path / 'out')
    r = cpl.Recipe('rtest_copy')
    first = r(raw, output_dir=out).PRODUCT
    with open(first, 'rb') as f:
        content = f.read()
    second = r(first, output_dir=out).PRODUCT
    assert second == os.path.join(out, 'rtest_copy-1.fits')
    with open(first, 'rb') as f:
        assert f.read() == content


# --- overlapping calls keep each other's products ------------------------------------
def hang(seconds):
    r = cpl.Recipe('rtest_hang')
    r.tag = 'RAW'
    r.param.seconds = seconds
    return r


def assert_one_renamed(paths, out, stem='rtest_hang'):
    """Both products kept, one under the recipe's name, one renamed with
    its PIPEFILE saying so; returns the renamed one."""
    names = sorted(os.path.basename(p) for p in paths)
    assert names == ['%s-1.fits' % stem, '%s.fits' % stem]
    assert listing(out) == names
    for path in paths:
        assert fits.getheader(path)['PIPEFILE'] == os.path.basename(path)
        assert_signature_holds(path)
    return os.path.join(out, '%s-1.fits' % stem)


def assert_signature_holds(path):
    """The runner signs products (CHECKSUM, as esorex does): a renamed
    one, whose PIPEFILE changed, still verifies."""
    with fits.open(path, checksum=True) as hdul:
        assert 'CHECKSUM' in hdul[0].header
        for hdu in hdul:
            assert hdu.verify_checksum() == 1, (path, hdu.name)


def test_overlapping_threaded_calls_keep_both_products(raw, tmp_path, caplog):
    out = str(tmp_path / 'out')
    hang(0.0)(raw, output_dir=out)          # an earlier run's product
    with caplog.at_level(logging.WARNING, logger='cpl'):
        slow = hang(2.0)(raw, output_dir=out, threaded=True)
        quick = hang(0.1)(raw, output_dir=out, threaded=True)
        paths = [quick.result(60).HANG_PRODUCT, slow.result(60).HANG_PRODUCT]
    # the one that ended first replaced the earlier run's product
    assert paths[1] == assert_one_renamed(paths, out)
    assert param_value(fits.getheader(paths[0]),
                       'seconds') == '0.1'
    assert [m for m in warnings_of(caplog) if 'rtest_hang-1.fits' in m]


@pytest.mark.parametrize('attempt', range(3))
def test_concurrent_calls_sharing_output_dir(raw_images, tmp_path, attempt):
    """Four calls made before any ends (each lasts 1 s), with an earlier
    call's product there: the first to end replaces it, each keeps its
    own product."""
    out = str(tmp_path / 'shared')
    hang(0.0)(raw_images[7], output_dir=out)
    inputs = raw_images[:4]
    r = hang(1.0)
    threads = [r(path, output_dir=out, threaded=True) for path in inputs]
    paths = [t.result(timeout=60).HANG_PRODUCT for t in threads]
    assert sorted(os.path.basename(p) for p in paths) == [
        'rtest_hang-1.fits', 'rtest_hang-2.fits', 'rtest_hang-3.fits',
        'rtest_hang.fits']
    for path, source in zip(paths, inputs):
        header = fits.getheader(path)
        assert header['ESO PRO REC1 RAW1 NAME'] == os.path.basename(source)
        assert header['PIPEFILE'] == os.path.basename(path)
    assert listing(out) == sorted(os.path.basename(p) for p in paths)


def test_a_threaded_call_made_after_another_ended_replaces_it(raw, raw2,
                                                             tmp_path):
    """Overlap is in time: a threaded call is a later call for a run that
    ended before it was made."""
    out = str(tmp_path / 'out')
    r = cpl.Recipe('rtest_copy')
    first = r(raw, output_dir=out, threaded=True)
    first.result(60)
    second = r(raw2, output_dir=out, threaded=True).result(60)
    assert first.result().PRODUCT == second.PRODUCT == os.path.join(
        out, 'rtest_copy.fits')
    assert np.array_equal(fits.getdata(second.PRODUCT), fits.getdata(raw2))
    assert listing(out) == ['rtest_copy.fits']


def test_a_file_made_during_the_call_is_kept(raw, tmp_path, caplog):
    out = tmp_path / 'out'
    with caplog.at_level(logging.WARNING, logger='cpl'):
        run = hang(1.0)(raw, output_dir=str(out), threaded=True)
        wait_until(lambda: out.is_dir(), 30)
        (out / 'rtest_hang.fits').write_bytes(b'precious')
        path = run.result(60).HANG_PRODUCT
    assert path == str(out / 'rtest_hang-1.fits')
    assert (out / 'rtest_hang.fits').read_bytes() == b'precious'
    assert fits.getheader(path)['PIPEFILE'] == 'rtest_hang-1.fits'
    assert any('rtest_hang-1.fits' in m for m in warnings_of(caplog))


CALL_SCRIPT = textwrap.dedent('''
    import os, sys, time
    import cpl
    cpl.Recipe.path = sys.argv[1]
    out, seconds, go = sys.argv[2], float(sys.argv[3]), sys.argv[4]
    r = cpl.Recipe('rtest_hang')
    r.tag = 'RAW'
    print('ready', flush=True)
    while go != '-' and not os.path.exists(go):
        time.sleep(0.01)
    res = r(sys.argv[5], output_dir=out, param={'seconds': seconds})
    print(res.HANG_PRODUCT, flush=True)
''')


def call_in_process(recipe_dir, out, seconds, go, raw):
    return subprocess.Popen(
        [sys.executable, '-c', CALL_SCRIPT, recipe_dir, out, str(seconds),
         go, raw], stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=REPO))


def test_overlapping_processes_keep_both_products(raw, tmp_path, recipe_dir):
    out = str(tmp_path / 'out')
    go = str(tmp_path / 'go')
    quick = call_in_process(recipe_dir, out, 0.1, go, raw)
    assert quick.stdout.readline() == 'ready\n'
    slow = call_in_process(recipe_dir, out, 3.0, '-', raw)
    assert slow.stdout.readline() == 'ready\n'
    # the slow call is running (its run folder is there): the quick one
    # starts and ends within it
    work = os.path.join(out, '.cplrun-work')
    wait_until(lambda: os.path.isdir(work) and os.listdir(work), 30)
    open(go, 'w').close()
    paths = [p.communicate(timeout=60)[0].strip() for p in (quick, slow)]
    assert quick.returncode == slow.returncode == 0
    renamed = assert_one_renamed(paths, out)
    assert paths[1] == renamed


@pytest.mark.parametrize('attempt', range(3))
def test_processes_ending_together_keep_both_products(raw, tmp_path,
                                                      recipe_dir, attempt):
    out = str(tmp_path / 'out')
    go = str(tmp_path / 'go')
    hang(0.0)(raw, output_dir=out)          # an earlier call's product
    calls = [call_in_process(recipe_dir, out, 0.3, go, raw) for _ in (0, 1)]
    for p in calls:
        assert p.stdout.readline() == 'ready\n'
    open(go, 'w').close()
    paths = [p.communicate(timeout=60)[0].strip() for p in calls]
    assert [p.returncode for p in calls] == [0, 0]
    assert_one_renamed(paths, out)


def test_a_later_process_replaces_the_products(raw, tmp_path, recipe_dir):
    out = str(tmp_path / 'out')
    paths = []
    for seconds in (0.0, 0.1):
        p = call_in_process(recipe_dir, out, seconds, '-', raw)
        paths.append(p.communicate(timeout=60)[0].split()[-1])
        assert p.returncode == 0
    assert paths == [os.path.join(out, 'rtest_hang.fits')] * 2
    assert param_value(fits.getheader(paths[1]),
                       'seconds') == '0.1'
    assert listing(out) == ['rtest_hang.fits']


def test_the_folder_lock_keeps_other_processes_out(tmp_path):
    folder = str(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, '-c', textwrap.dedent('''
            import sys, time
            from cpl import _products
            with _products._folder_locked(sys.argv[1]) as locked:
                print(locked, flush=True)
                time.sleep(1.0)
            ''' ), folder], stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=REPO))
    try:
        assert holder.stdout.readline() == 'True\n'
        start = time.monotonic()
        with _products._folder_locked(folder) as locked:
            waited = time.monotonic() - start
            assert locked
            assert os.listdir(folder) == [_products.LOCK_NAME]
    finally:
        holder.wait(30)
    assert waited > 0.5
    assert os.listdir(folder) == []


# --- all or none ---------------------------------------------------------------------
def test_a_failed_placement_puts_the_earlier_products_back(
        raw_images, tmp_path, monkeypatch):
    out = str(tmp_path / 'out')
    r = cpl.Recipe('rtest_copy')
    r.param.per_frame = True
    r(raw_images[:3], output_dir=out)
    before = {}
    for name in listing(out):
        with open(os.path.join(out, name), 'rb') as f:
            before[name] = f.read()
    assert len(before) == 4
    replace = os.replace
    into_out = []

    def second_fails(src, dst):
        if os.path.dirname(dst) == out:
            into_out.append(dst)
            if len(into_out) == 2:
                raise OSError(errno.EIO, 'simulated I/O error', dst)
        return replace(src, dst)
    monkeypatch.setattr(os, 'replace', second_fails)
    with pytest.raises(OSError) as info:
        r(raw_images[3:6], output_dir=out)
    monkeypatch.undo()
    assert 'none was' in str(info.value)
    assert len(into_out) == 3       # two replacements, one put back
    workdir = str(info.value).split('they are kept in ')[1].split(' (')[0]
    assert sorted(n for n in os.listdir(workdir) if n.endswith('.fits')) \
        == sorted(before)
    shutil.rmtree(workdir)
    after = {}
    for name in listing(out):
        with open(os.path.join(out, name), 'rb') as f:
            after[name] = f.read()
    assert after == before


def test_a_failed_placement_sets_pipefile_back(raw_images, tmp_path,
                                               monkeypatch):
    """A renamed product got its PIPEFILE changed in the file it shares
    with the run's folder; when the run's products cannot all be placed,
    the one kept in the run's folder says its own name again."""
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'rtest_copy.fits').write_bytes(b'not FITS')
    link = os.link

    def second_fails(src, dst, *args, **kwargs):
        if dst == str(out / 'rtest_copy_0000.fits'):
            raise OSError(errno.EIO, 'simulated I/O error', dst)
        return link(src, dst, *args, **kwargs)
    monkeypatch.setattr(os, 'link', second_fails)
    r = cpl.Recipe('rtest_copy')
    r.param.per_frame = True
    with pytest.raises(OSError) as info:
        r(raw_images[:1], output_dir=str(out))
    monkeypatch.undo()
    workdir = str(info.value).split('they are kept in ')[1].split(' (')[0]
    kept = os.path.join(workdir, 'rtest_copy.fits')
    assert fits.getheader(kept)['PIPEFILE'] == 'rtest_copy.fits'
    shutil.rmtree(workdir)
    assert listing(str(out)) == ['rtest_copy.fits']
    assert (out / 'rtest_copy.fits').read_bytes() == b'not FITS'


# --- file systems without hard links or locks ----------------------------------------
def rerun_and_overlap(raw, out, caplog, pause=0.0):
    """The everyday rerun, then two overlapping calls, into out.  pause:
    the time stamps' margin (COARSE_STAMP_MARGIN) on this file system,
    within which a rerun keeps the earlier product."""
    first = hang(0.0)(raw, output_dir=out).HANG_PRODUCT
    if pause:
        with caplog.at_level(logging.WARNING, logger='cpl'):
            soon = hang(0.1)(raw, output_dir=out).HANG_PRODUCT
        assert soon == os.path.join(out, 'rtest_hang-1.fits')
        assert fits.getheader(soon)['PIPEFILE'] == 'rtest_hang-1.fits'
        os.unlink(soon)
        time.sleep(pause)
    again = hang(0.2)(raw, output_dir=out).HANG_PRODUCT
    assert first == again == os.path.join(out, 'rtest_hang.fits')
    assert param_value(fits.getheader(again),
                       'seconds') == '0.2'
    assert listing(out) == ['rtest_hang.fits']
    time.sleep(pause)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger='cpl'):
        slow = hang(2.0)(raw, output_dir=out, threaded=True)
        quick = hang(0.1)(raw, output_dir=out, threaded=True)
        paths = [quick.result(60).HANG_PRODUCT, slow.result(60).HANG_PRODUCT]
    assert paths[1] == assert_one_renamed(paths, out)
    assert any('rtest_hang-1.fits' in m for m in warnings_of(caplog))


def test_without_hard_links(raw, tmp_path, monkeypatch, caplog):
    """link() refused in the output folder (EPERM, as on vfat)."""
    out = str(tmp_path / 'out')
    link = os.link

    def no_links_in_out(src, dst, *args, **kwargs):
        if os.path.dirname(os.path.abspath(dst)) == out:
            raise PermissionError(errno.EPERM, 'Operation not permitted',
                                  src, None, dst)
        return link(src, dst, *args, **kwargs)
    monkeypatch.setattr(os, 'link', no_links_in_out)
    rerun_and_overlap(raw, out, caplog)


@pytest.fixture
def fat_dir(tmp_path):
    """A FAT file system, mounted: by the kernel (a loop device), or, when
    the kernel refuses vfat, by fusefat (a FAT driver in user space)."""
    if os.geteuid() != 0:
        pytest.skip('mounting a FAT image needs root')
    if not shutil.which('mkfs.vfat'):
        pytest.fail('mkfs.vfat is missing: apt-get install dosfstools')
    image, mount = str(tmp_path / 'fat.img'), str(tmp_path / 'fat')
    os.mkdir(mount)
    with open(image, 'wb') as f:
        f.truncate(64 << 20)
    subprocess.run(['mkfs.vfat', image], check=True, capture_output=True)
    kernel = subprocess.run(['mount', '-o', 'loop', '-t', 'vfat', image,
                             mount], capture_output=True, text=True)
    if kernel.returncode == 0:
        unmount = ['umount', mount]
    elif shutil.which('fusefat') and os.path.exists('/dev/fuse'):
        # hard_remove: a file removed while open goes at once, as on the
        # kernel's vfat (libfuse would hide it as .fuse_hidden*, and the
        # folder holding it could not be removed)
        subprocess.run(['fusefat', '-o', 'rw+,hard_remove', image, mount],
                       check=True, capture_output=True, timeout=30)
        unmount = ['fusermount', '-u', mount]
    else:
        pytest.skip('the kernel refuses to mount vfat here (%s), and fusefat '
                    'is not installed' % kernel.stderr.strip())
    try:
        yield mount
    finally:
        subprocess.run(unmount, capture_output=True, timeout=30)


def test_on_a_fat_file_system(raw, fat_dir, caplog):
    probe = os.path.join(fat_dir, 'probe')
    open(probe, 'w').close()
    with pytest.raises(OSError) as info:
        os.link(probe, probe + '2')
    assert info.value.errno in (errno.EPERM, errno.EOPNOTSUPP)
    # fusefat's time stamps count whole seconds; the kernel's vfat keeps
    # the creation time in 10 ms as ctime
    coarse = _products._whole_seconds(os.stat(probe))
    out = os.path.join(fat_dir, 'out')
    rerun_and_overlap(raw, out, caplog, pause=_products.COARSE_STAMP_MARGIN
                      + 0.5 if coarse else 0.0)


def test_without_file_locks_nothing_is_replaced(raw, tmp_path, monkeypatch,
                                                 caplog):
    out = str(tmp_path / 'out')
    first = cpl.Recipe('rtest_copy')(raw, output_dir=out).PRODUCT

    def refused(fd, operation):
        raise OSError(errno.ENOLCK, 'No locks available')
    monkeypatch.setattr(fcntl, 'flock', refused)
    with caplog.at_level(logging.WARNING, logger='cpl'):
        second = cpl.Recipe('rtest_copy')(raw, output_dir=out).PRODUCT
    assert first == os.path.join(out, 'rtest_copy.fits')
    assert second == os.path.join(out, 'rtest_copy-1.fits')
    assert any('refuses file locks' in m for m in warnings_of(caplog))
    assert fits.getheader(second)['PIPEFILE'] == 'rtest_copy-1.fits'


def test_a_lock_file_another_user_made(raw, tmp_path, monkeypatch):
    """In a folder shared by a group, the lock file left by another user's
    process (killed while placing) may not be writable: it locks all the
    same."""
    out = tmp_path / 'out'
    out.mkdir()
    lock = str(out / _products.LOCK_NAME)
    open(lock, 'w').close()
    os.chmod(lock, 0o444)
    os_open = os.open

    def as_another_user(path, flags, *args, **kwargs):
        if path == lock and flags & os.O_RDWR:
            raise PermissionError(errno.EACCES, 'Permission denied', path)
        return os_open(path, flags, *args, **kwargs)
    monkeypatch.setattr(os, 'open', as_another_user)
    path = cpl.Recipe('rtest_copy')(raw, output_dir=str(out)).PRODUCT
    assert path == str(out / 'rtest_copy.fits')


# --- PIPEFILE ------------------------------------------------------------------------
def product(path, pipefile, n_cards=0):
    hdu = fits.PrimaryHDU(np.arange(6, dtype=np.int16).reshape(2, 3))
    hdu.header['PIPEFILE'] = (pipefile, 'Filename of data product')
    for i in range(n_cards):
        hdu.header['KEY%d' % i] = i
    hdu.writeto(path)
    with open(path, 'rb') as f:
        return f.read()


def header_blocks(data):
    return fits.Header.fromstring(data.decode('ascii', 'replace'))


@pytest.mark.parametrize('n_cards, name, grows', [
    (0, 'x-1.fits', False),
    # the header fills its block to the END card: one more block
    (36 - 8, 'x-1.fits', False),
    (36 - 9, 'x-' + 'n' * 70 + '.fits', True)])
def test_set_pipefile(tmp_path, n_cards, name, grows):
    path = str(tmp_path / 'x.fits')
    before = product(path, 'x.fits', n_cards)
    inode = os.stat(path).st_ino
    _products.set_pipefile(path, name)
    with fits.open(path) as hdul:
        assert hdul[0].header['PIPEFILE'] == name
        assert hdul[0].header.comments['PIPEFILE'] == \
            'Filename of data product'
        assert np.array_equal(hdul[0].data,
                              np.arange(6, dtype=np.int16).reshape(2, 3))
        others = [(k, v) for k, v in hdul[0].header.items()
                  if k != 'PIPEFILE']
    with fits.open(io.BytesIO(before)) as hdul:
        assert others == [(k, v) for k, v in hdul[0].header.items()
                          if k != 'PIPEFILE']
    assert (os.stat(path).st_ino != inode) == grows
    assert os.listdir(str(tmp_path)) == ['x.fits']


@pytest.mark.parametrize('n_cards', [0, 36 - 9])
def test_set_pipefile_keeps_a_signed_product_verifying(tmp_path, n_cards):
    path = str(tmp_path / 'x.fits')
    hdu = fits.PrimaryHDU(np.arange(6, dtype=np.int16).reshape(2, 3))
    hdu.header['PIPEFILE'] = ('x.fits', 'Filename of data product')
    for i in range(n_cards):
        hdu.header['KEY%d' % i] = i
    fits.HDUList([hdu, fits.ImageHDU(np.ones(4))]).writeto(path, checksum=True)
    _products.set_pipefile(path, 'x-' + 'n' * 70 + '.fits')
    assert_signature_holds(path)


def test_set_pipefile_leaves_other_files_alone(tmp_path):
    text = tmp_path / 'x.txt'
    text.write_bytes(b'not FITS')
    _products.set_pipefile(str(text), 'y')
    assert text.read_bytes() == b'not FITS'
    bare = str(tmp_path / 'bare.fits')
    fits.PrimaryHDU(np.zeros(2)).writeto(bare)
    with open(bare, 'rb') as f:
        content = f.read()
    _products.set_pipefile(bare, 'y.fits')
    with open(bare, 'rb') as f:
        assert f.read() == content
