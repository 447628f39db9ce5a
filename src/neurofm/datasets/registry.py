"""The dataset registry: ten named public datasets, where their files are, and how they become recordings.

Each :class:`DatasetSpec` names its public source, licence, files (with the checksums the source
publishes, where it publishes any) and how its files become :class:`RecordingSource` objects. A
dataset is looked up locally first (the mirror: an argument or ``$NEUROFM_MIRROR``, then the
download cache), every file is verified before it is handed out, and downloading is explicit
(:func:`fetch`, ``neurofm datasets fetch``)::

    resolved = resolve("eegmat", require="available")   # verified local files, maybe a subset
    print(resolved.note)                                  # "partial: 12 of 36 subjects ..."
    sources = resolved.sources()                          # -> corpus preparation

The on-disk layout of a dataset is ``<mirror or cache>/<spec.mirror_folder>/<file.path>``, so a
folder filled by ``neurofm datasets fetch NAME --dest DIR`` is itself a valid mirror.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from neurofm.data.recording import Recording
from neurofm.data.sources import RecordingSource
from neurofm.datasets.checksums import (
    BCI_IV_ARCHIVE_SHA256,
    DREAMS_SPINDLES_SHA256,
    EEGBCI_S001_SHA256,
    EEGLAB_SAMPLE_SHA256,
    EEGMAT_SHA256,
    MNE_FORMATS_SHA256,
    MYO_GESTURES_SHA256,
)
from neurofm.datasets.download import (
    ChecksumCache,
    RemoteArchive,
    RemoteFile,
    cache_root,
    download_file,
    extract_zip_member,
    mirror_root,
    read_sha256sums,
    safe_join,
    write_sha256sums,
)
from neurofm.datasets.sleep_edf_checksums import SLEEP_EDF_SHA256
from neurofm.errors import DatasetError

#: File in a dataset folder holding checksums recorded on first use or given by the user.
TRUST_RECORD = "TRUSTED_SHA256SUMS"
#: Sub-folder of a dataset folder where downloaded archives wait to be unpacked.
ARCHIVES_FOLDER = ".archives"

FileState = Literal["verified", "trusted", "unverified", "mismatch", "missing"]
#: What a dataset's recordings measure: brain (``eeg``) or muscle (``emg``) activity.
Modality = Literal["eeg", "emg"]
_USABLE_STATES = ("verified", "trusted")
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReaderRef:
    """A reader named by module and function, imported only when a recording is read.

    The registry must import before (and without) the readers' dependencies, and a
    :class:`RecordingSource` must pickle for worker processes: a reference by name does both.
    """

    module: str
    function: str

    def __call__(self, *paths: Path, **kwargs: Any) -> Recording:
        reader = getattr(importlib.import_module(self.module), self.function)
        return reader(*paths, **kwargs)


READ_RECORDING = ReaderRef("neurofm.data.readers", "read_recording")
READ_MYO_GESTURE_FILE = ReaderRef("neurofm.data.layouts", "read_myo_gesture_file")
READ_DREAMS_EXCERPT = ReaderRef("neurofm.data.layouts", "read_dreams_excerpt")
READ_DREAMS_SPINDLES_EXCERPT = ReaderRef("neurofm.data.layouts", "read_dreams_spindles_excerpt")
READ_BI2012 = ReaderRef("neurofm.data.layouts", "read_bi2012")
READ_BCI_IV_MI = ReaderRef("neurofm.data.layouts", "read_bci_iv_mi")
READ_SLEEP_EDF = ReaderRef("neurofm.data.layouts", "read_sleep_edf")


@dataclass(frozen=True)
class DatasetSpec:
    """One named dataset: what it is, where it comes from, its files, and its recordings.

    Attributes:
        name: registry name (``"eegmat"``).
        description, task, license, homepage, citation: for people, shown by the CLI and docs.
        mirror_folder: the dataset's folder name under a mirror or the download cache.
        files: every file the dataset consists of, with source URL and expected checksum.
        recording_plan: the recordings, as sources whose ``paths`` are relative to the dataset
            folder (use :meth:`sources` or :meth:`ResolvedDataset.sources` to get loadable ones).
        archives: archives the source publishes, for files that ship only inside one.
        checksum_source: where the expected checksums come from, or why there are none.
        modality: what the recordings measure (``"eeg"`` datasets feed EEG pretraining corpora).
        pretraining_exclusions: recording id -> why a pretraining corpus must not take that
            recording although the dataset is EEG (synthetic test signals, a duplicate...).
    """

    name: str
    description: str
    task: str
    license: str
    homepage: str
    citation: str
    mirror_folder: str
    files: tuple[RemoteFile, ...]
    recording_plan: tuple[RecordingSource, ...]
    archives: tuple[RemoteArchive, ...] = ()
    checksum_source: str = ""
    modality: Modality = "eeg"
    pretraining_exclusions: Mapping[str, str] = field(default_factory=dict)
    _files_by_path: dict[str, RemoteFile] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_files_by_path", {f.path: f for f in self.files})

    def file(self, path: str) -> RemoteFile:
        """The catalogue entry of one file, by its relative path."""
        return self._files_by_path[path]

    def archive(self, name: str) -> RemoteArchive:
        """The archive named ``name`` (a :class:`DatasetError` names the known ones otherwise)."""
        for archive in self.archives:
            if archive.name == name:
                return archive
        known = ", ".join(a.name for a in self.archives) or "none"
        raise DatasetError(f"{self.name}: no archive {name!r} in the catalogue entry (known: {known})")

    @property
    def subjects(self) -> list[str]:
        """Distinct subjects of the recording plan, in plan order."""
        return list(dict.fromkeys(s.subject for s in self.recording_plan if s.subject is not None))

    def sources(self, root: str | os.PathLike | None = None) -> list[RecordingSource]:
        """Loadable sources for the recordings whose files all exist under ``root``.

        ``root`` is the dataset folder (``<mirror>/<mirror_folder>``); its files are not
        checksummed. Without ``root``, the verified local files are used
        (``resolve(name, require="available")``), logging a warning when only part of the
        dataset is present and raising :class:`DatasetError` when none is.
        """
        if root is None:
            resolved = resolve(self, require="available")
            if resolved.note:
                _log.warning("%s: %s", self.name, resolved.note)
            return resolved.sources()
        root = Path(root)

        def locate(relative: Path) -> Path | None:
            candidate = safe_join(root, relative.as_posix(), what=f"{self.name}/{relative}")
            return candidate if candidate.is_file() else None

        return _rebase(self.recording_plan, locate)


def _rebase(
    plan: tuple[RecordingSource, ...], locate: Callable[[Path], Path | None]
) -> list[RecordingSource]:
    sources = []
    for planned in plan:
        located = [locate(relative) for relative in planned.paths]
        if all(path is not None for path in located):
            sources.append(dataclasses.replace(planned, paths=tuple(located)))  # type: ignore[arg-type]
    return sources


# --------------------------------------------------------------------------------------------
# The catalogue
# --------------------------------------------------------------------------------------------

_PHYSIONET_EEGMAT = "https://physionet.org/files/eegmat/1.0.0/"
_MYO_COMMIT = "2630b1dd8b83b2fa386f06d536f64254ad541ac5"
_MYO_RAW = f"https://raw.githubusercontent.com/aljazfrancic/myo-readings-dataset/{_MYO_COMMIT}/"
_MNE_TESTING_COMMIT = "e31ecb0ab137b3d89c938d0985d42f1d2ffb2bad"
_MNE_TESTING_RAW = f"https://raw.githubusercontent.com/mne-tools/mne-testing-data/{_MNE_TESTING_COMMIT}/"
_DREAMS_ZENODO = "https://zenodo.org/record/2650142/files/"
_BI2012_ZENODO = "https://zenodo.org/record/2649069/files/"
_BCI_IV = "https://www.bbci.de/competition/download/competition_iv/"
_PHYSIONET_EEGBCI = "https://physionet.org/files/eegmmidb/1.0.0/"
_PHYSIONET_SLEEP_EDF = "https://physionet.org/files/sleep-edfx/1.0.0/"
_SPINDLES_COMMIT = "37c0e2c7ad991223556151c586051b283ce5af9b"
_SPINDLES_RAW = (
    f"https://raw.githubusercontent.com/carlosloza/spindles-HMM/{_SPINDLES_COMMIT}/DatabaseSpindles/"
)

_MYO_GESTURES = (
    "hibernation (rest)", "flexion", "extension", "radial deviation", "ulnar deviation",
    "pronation", "supination", "fist",
)


def _eegmat() -> DatasetSpec:
    files = tuple(
        RemoteFile(name, _PHYSIONET_EEGMAT + name, digest) for name, digest in EEGMAT_SHA256.items()
    )
    plan = []
    for number in range(36):
        subject = f"Subject{number:02d}"
        # _1 is the resting baseline recorded before the task, _2 the serial subtraction.
        for part, label in ((1, "rest"), (2, "arithmetic")):
            stem = f"{subject}_{part}"
            plan.append(
                RecordingSource(
                    id=f"eegmat/{stem}", paths=(Path(f"{stem}.edf"),), reader=READ_RECORDING,
                    subject=subject, label=label,
                )
            )
    return DatasetSpec(
        name="eegmat",
        description=(
            "PhysioNet EEG During Mental Arithmetic Tasks v1.0.0: 36 subjects, 19-channel 10-20 "
            "EEG (plus A2-A1 and ECG), 500 Hz EDF+, 180 s rest and 60 s serial subtraction each."
        ),
        task="rest vs mental arithmetic (recording label), subject-wise splits",
        license="Open Data Commons Attribution License v1.0",
        homepage="https://physionet.org/content/eegmat/1.0.0/",
        citation=(
            "Zyma I et al. Electroencephalograms during Mental Arithmetic Task Performance. "
            "Data 4(1):14, 2019. doi:10.3390/data4010014; and Goldberger AL et al., PhysioNet, "
            "Circulation 101(23):e215-e220, 2000."
        ),
        mirror_folder="eegmat",
        files=files,
        recording_plan=tuple(plan),
        checksum_source="SHA256SUMS.txt published with the PhysioNet release",
    )


def _myo_gestures() -> DatasetSpec:
    files = tuple(
        RemoteFile(path, _MYO_RAW + "_readings_right_hand/" + path.removeprefix("right_hand/"), digest)
        for path, digest in MYO_GESTURES_SHA256.items()
    )
    plan = []
    for path in MYO_GESTURES_SHA256:
        session_folder, gesture_file = path.split("/")[1:]
        participant, session = session_folder.split("-")
        gesture = gesture_file.removesuffix(".txt")
        # No recording-level label: file k alternates rest (0) and gesture k every 5 s, and the
        # reader returns those per-sample labels.
        plan.append(
            RecordingSource(
                id=f"myo_gestures/{session_folder}/{gesture}", paths=(Path(path),),
                reader=READ_MYO_GESTURE_FILE,
                reader_kwargs={"participant": participant, "session": session},
                subject=participant, session=session,
            )
        )
    return DatasetSpec(
        name="myo_gestures",
        description=(
            "Myo armband readings, right forearm: 8 surface EMG channels at about 200 Hz in "
            "device units (int8), one ~60 s file per gesture with per-sample labels 0-7 ("
            + ", ".join(f"{i} {g}" for i, g in enumerate(_MYO_GESTURES))
            + "). 10 participants, 15 sessions."
        ),
        task="8-way gesture recognition on windows inside one label, cross-participant splits",
        license="MIT (LICENSE in the source repository; keep it with the data)",
        homepage=f"https://github.com/aljazfrancic/myo-readings-dataset/tree/{_MYO_COMMIT}",
        citation="Frančič A. myo-readings-dataset (GitHub), commit " + _MYO_COMMIT,
        mirror_folder="myo_gestures",
        files=files,
        recording_plan=tuple(plan),
        checksum_source=(
            "pinned by git commit; SHA-256 computed from the files at that commit (the source "
            "publishes none)"
        ),
        modality="emg",
    )


def _eeglab_sample() -> DatasetSpec:
    files = tuple(
        RemoteFile(name, _MNE_TESTING_RAW + "EEGLAB/" + name, digest)
        for name, digest in EEGLAB_SAMPLE_SHA256.items()
    )
    # The .fdt data file is read through the .set header, so the reader gets the header only.
    plan = (
        RecordingSource(id="eeglab_sample/test_raw", paths=(Path("test_raw.set"),), reader=READ_RECORDING),
    )
    return DatasetSpec(
        name="eeglab_sample",
        description=(
            "EEGLAB tutorial recording as cut for MNE's testing data: 32 EEG channels "
            "('EEG 000'...), 128 Hz, 238 s, 154 events (square / rt)."
        ),
        task="event-aligned windows; EEGLAB reader fixture",
        license="BSD (EEGLAB); BSD-3-Clause (MNE testing data)",
        homepage=f"https://github.com/mne-tools/mne-testing-data/tree/{_MNE_TESTING_COMMIT}/EEGLAB",
        citation="Delorme A, Makeig S. EEGLAB. J Neurosci Methods 134:9-21, 2004.",
        mirror_folder="eeglab_sample",
        files=files,
        recording_plan=plan,
        checksum_source=(
            "pinned by git commit; SHA-256 computed from the files at that commit (the source "
            "publishes none)"
        ),
    )


def _dreams_sleep() -> DatasetSpec:
    archive = RemoteArchive("DatabaseSubjects.rar", _DREAMS_ZENODO + "DatabaseSubjects.rar")
    names = []
    plan = []
    for number in range(1, 21):
        signal, aasm, rk = (
            f"subject{number}.edf",
            f"HypnogramAASM_subject{number}.txt",
            f"HypnogramR&K_subject{number}.txt",
        )
        names += [signal, aasm, rk]
        # AASM hypnograms: one stage per 5 s (5 W, 4 REM, 3 N1, 2 N2, 1 N3, <=0 unknown).
        plan.append(
            RecordingSource(
                id=f"dreams_sleep/subject{number}", paths=(Path(signal), Path(aasm)),
                reader=READ_DREAMS_EXCERPT, subject=f"subject{number}",
            )
        )
    return DatasetSpec(
        name="dreams_sleep",
        description=(
            "DREAMS Subjects Database: 20 whole-night polysomnograms of healthy adults (EDF, "
            "EEG/EOG/EMG, 200 Hz) with hypnograms scored in 5-s steps by AASM and R&K rules."
        ),
        task="sleep staging W/N1/N2/N3/REM on 30-s epochs, leave-subjects-out splits",
        license="as stated on the Zenodo record (redistributions state CC BY-NC-SA 4.0); check before use",
        homepage="https://zenodo.org/record/2650142",
        citation=(
            "Devuyst S, Dutoit T, Stenuit P, Kerkhofs M. The DREAMS Databases and Assessment "
            "Algorithm. Zenodo, 2005. doi:10.5281/zenodo.2650142"
        ),
        mirror_folder="dreams_sleep",
        files=tuple(
            RemoteFile(name, archive=archive.name, member=name) for name in names
        ),
        recording_plan=tuple(plan),
        archives=(archive,),
        checksum_source=(
            "none published (Zenodo shows only an MD5 of the archive); files are refused unless "
            "checksums are given or recorded with --trust-on-first-use"
        ),
    )


def _bi2012_p300() -> DatasetSpec:
    archives = []
    files = []
    plan = []
    for number in range(1, 26):
        subject = f"subject_{number:02d}"
        archive = RemoteArchive(f"{subject}.zip", f"{_BI2012_ZENODO}{subject}.zip")
        archives.append(archive)
        for run in ("training", "online"):
            path = f"{subject}/{run}.mat"
            files.append(RemoteFile(path, archive=archive.name, member=path))
            plan.append(
                RecordingSource(
                    id=f"bi2012_p300/{subject}/{run}", paths=(Path(path),), reader=READ_BI2012,
                    subject=subject, session=run,
                )
            )
    return DatasetSpec(
        name="bi2012_p300",
        description=(
            "Brain Invaders 2012 (GIPSA-lab): visual P300 BCI game, 25 subjects, 16 EEG "
            "channels at 128 Hz, training and online runs with flash and target stimulus codes."
        ),
        task="target vs non-target epochs after each flash, subject-wise splits",
        license="as stated on the Zenodo record; check before use",
        homepage="https://doi.org/10.5281/zenodo.2649006",
        citation=(
            "Van Veen G, Barachant A, Andreev A, Cattan G, Rodrigues PC, Congedo M. Building "
            "Brain Invaders: EEG data of an experimental validation. arXiv:1905.05182, 2019."
        ),
        mirror_folder="bi2012_p300",
        files=tuple(files),
        recording_plan=tuple(plan),
        archives=tuple(archives),
        checksum_source=(
            "none published as SHA-256; files are refused unless checksums are given or "
            "recorded with --trust-on-first-use"
        ),
    )


def _graz_mi() -> DatasetSpec:
    sets = {
        "BCICIV_2a": [f"A{s:02d}{part}" for s in range(1, 10) for part in "TE"],
        "BCICIV_2b": [f"B{s:02d}{r:02d}{'T' if r <= 3 else 'E'}" for s in range(1, 10) for r in range(1, 6)],
    }
    archives = []
    files = []
    plan = []
    for folder, stems in sets.items():
        archive_name = f"{folder}_gdf.zip"
        archives.append(
            RemoteArchive(archive_name, _BCI_IV + archive_name, BCI_IV_ARCHIVE_SHA256[archive_name])
        )
        for stem in stems:
            path = f"{folder}/{stem}.gdf"
            files.append(RemoteFile(path, archive=archive_name, member=f"{stem}.gdf"))
            # A01T -> subject A01, session T; B0104E -> subject B01, session 04E.
            plan.append(
                RecordingSource(
                    id=f"graz_mi/{stem}", paths=(Path(path),), reader=READ_BCI_IV_MI,
                    subject=stem[:3], session=stem[3:],
                )
            )
    return DatasetSpec(
        name="graz_mi",
        description=(
            "BCI Competition IV datasets 2a (9 subjects, 22 EEG + 3 EOG, 4-class motor imagery) "
            "and 2b (9 subjects, C3/Cz/C4 + 3 EOG, left vs right hand), Graz, 250 Hz GDF. The "
            "evaluation (E) sessions carry no class labels; the organisers publish those apart."
        ),
        task="left vs right hand motor imagery, trials from the cue events, subject-wise splits",
        license="BCI Competition IV terms: free for research; cite the data set descriptions",
        homepage="https://www.bbci.de/competition/iv/",
        citation=(
            "Brunner C, Leeb R, Müller-Putz GR, Schlögl A, Pfurtscheller G. BCI Competition 2008 "
            "Graz data set A; Leeb R, Brunner C, Müller-Putz GR, Schlögl A, Pfurtscheller G. BCI "
            "Competition 2008 Graz data set B. Graz University of Technology, 2008."
        ),
        mirror_folder="graz_mi",
        files=tuple(files),
        recording_plan=tuple(plan),
        archives=tuple(archives),
        checksum_source=(
            "archive SHA-256 from a third-party record (sktime-neuro's pooch registry); the "
            "organisers publish none. GDF files are trusted as members of a verified archive."
        ),
    )


#: EEGBCI runs: R01 eyes open, R02 eyes closed (60 s each), then three rounds of four tasks.
_EEGBCI_RUN_TASKS = {
    1: "baseline, eyes open", 2: "baseline, eyes closed",
    **dict.fromkeys((3, 7, 11), "real left or right fist"),
    **dict.fromkeys((4, 8, 12), "imagined left or right fist"),
    **dict.fromkeys((5, 9, 13), "real both fists or both feet"),
    **dict.fromkeys((6, 10, 14), "imagined both fists or both feet"),
}


def _eegbci() -> DatasetSpec:
    files = []
    plan = []
    for number in range(1, 110):
        subject = f"S{number:03d}"
        for run in range(1, 15):
            stem = f"{subject}R{run:02d}"
            for name in (f"{stem}.edf", f"{stem}.edf.event"):
                files.append(
                    RemoteFile(name, f"{_PHYSIONET_EEGBCI}{subject}/{name}", EEGBCI_S001_SHA256.get(name))
                )
            # Annotations T0 (rest), T1 and T2 (the run's two classes) come with the EDF+ file.
            plan.append(
                RecordingSource(
                    id=f"eegbci/{stem}", paths=(Path(f"{stem}.edf"),), reader=READ_RECORDING,
                    subject=subject, session=f"R{run:02d}",
                )
            )
    return DatasetSpec(
        name="eegbci",
        description=(
            "PhysioNet EEG Motor Movement/Imagery 1.0.0 (BCI2000): 109 subjects S001-S109, 14 "
            "runs each (R01 eyes open, R02 eyes closed, R03-R14 real and imagined fist/feet "
            "movement), 64 EEG channels of the 10-10 system (labels like 'Fc5.'), 160 Hz EDF+ "
            "with T0/T1/T2 annotations."
        ),
        task="motor execution and imagery (T1 vs T2 events per run); a 64-channel montage for pretraining",
        license="Open Data Commons Attribution License v1.0",
        homepage="https://physionet.org/content/eegmmidb/1.0.0/",
        citation=(
            "Schalk G, McFarland DJ, Hinterberger T, Birbaumer N, Wolpaw JR. BCI2000: A "
            "General-Purpose Brain-Computer Interface (BCI) System. IEEE TBME 51(6):1034-1043, "
            "2004; and Goldberger AL et al., PhysioNet, Circulation 101(23):e215-e220, 2000."
        ),
        mirror_folder="eegbci",
        files=tuple(files),
        recording_plan=tuple(plan),
        checksum_source=(
            "S001: SHA-256 of the shared mirror's repaired copy (a git copy whose LF bytes had "
            "become CR LF, turned back; R01/R02 cut to 60 whole records), which PhysioNet's own "
            "checksums could not be compared with; S002-S109: none in neurofm, pass PhysioNet's "
            "SHA256SUMS.txt with --checksums or use --trust-on-first-use"
        ),
    )


#: DREAMS Sleep Spindles excerpts: sampling rate (Hz) and EEG derivation, as the database
#: describes them (the text files state the derivation, not the rate).
DREAMS_SPINDLES_EXCERPTS: dict[int, tuple[float, str]] = {
    1: (100.0, "C3-A1"), 2: (200.0, "CZ-A1"), 3: (50.0, "C3-A1"), 4: (200.0, "CZ-A1"),
    5: (200.0, "CZ-A1"), 6: (200.0, "CZ-A1"), 7: (200.0, "CZ-A1"), 8: (200.0, "CZ-A1"),
}


def _dreams_spindles() -> DatasetSpec:
    names = ["DREAMS_databases_License.txt", "excerpt3.edf"]
    plan = []
    for number, (sfreq, derivation) in DREAMS_SPINDLES_EXCERPTS.items():
        excerpt = f"excerpt{number}"
        # Expert 2 scored excerpts 1-6 only.
        scorings = [f"Visual_scoring1_{excerpt}.txt", f"Automatic_detection_{excerpt}.txt"]
        if number <= 6:
            scorings.insert(1, f"Visual_scoring2_{excerpt}.txt")
        paths = [f"{excerpt}.txt", f"Hypnogram_{excerpt}.txt", *scorings]
        names += paths
        plan.append(
            RecordingSource(
                id=f"dreams_spindles/{excerpt}", paths=tuple(Path(p) for p in paths),
                reader=READ_DREAMS_SPINDLES_EXCERPT,
                reader_kwargs={"sfreq": sfreq, "derivation": derivation}, subject=excerpt,
            )
        )
    # Excerpt 3's whole polysomnogram (EEG O1-A1, C3-A1, FP1-A1, EOG, EMG, ECG... at 50 Hz).
    plan.append(
        RecordingSource(
            id="dreams_spindles/excerpt3_psg", paths=(Path("excerpt3.edf"),), reader=READ_RECORDING,
            subject="excerpt3", session="psg",
        )
    )
    return DatasetSpec(
        name="dreams_spindles",
        description=(
            "DREAMS Sleep Spindles database (University of Mons): 8 excerpts of 30 min, one EEG "
            "derivation each as microvolt text (excerpt1 C3-A1 100 Hz, excerpt3 C3-A1 50 Hz, the "
            "others CZ-A1 200 Hz; the rate is not in the file), R&K stages every 5 s, spindles "
            "scored by two experts (expert 2: excerpts 1-6) and a published detector; excerpt 3 "
            "also as a 20-signal PSG EDF."
        ),
        task="sleep staging (5-s or 30-s epochs) and spindle detection, one excerpt per subject",
        license="Creative Commons Attribution-NonCommercial-NoDerivs 3.0 (keep DREAMS_databases_License.txt)",
        homepage="https://zenodo.org/record/2650142",
        citation=(
            "Devuyst S, Dutoit T, Stenuit P, Kerkhofs M. Automatic sleep spindles detection - "
            "overview and development of a standard proposal assessment method. IEEE EMBC 2011, "
            "pp. 1713-1716."
        ),
        mirror_folder="dreams_spindles",
        files=tuple(RemoteFile(n, _SPINDLES_RAW + n, DREAMS_SPINDLES_SHA256.get(n)) for n in names),
        recording_plan=tuple(plan),
        checksum_source=(
            "the source publishes none; excerpts 1-6: SHA-256 of the files as taken byte for "
            f"byte from github.com/carlosloza/spindles-HMM at commit {_SPINDLES_COMMIT} (the "
            "shared mirror's SHA256SUMS); excerpts 7-8: none, use --trust-on-first-use"
        ),
        pretraining_exclusions={
            "dreams_spindles/excerpt3_psg": (
                "repeats excerpt3.txt's C3-A1 over the same 30 min; pretraining takes the text excerpt"
            ),
        },
    )


def _sleep_edf() -> DatasetSpec:
    files = tuple(
        RemoteFile(path, _PHYSIONET_SLEEP_EDF + path, digest) for path, digest in SLEEP_EDF_SHA256.items()
    )
    # A night is SC4ssN (cassette) or ST7ssN (telemetry): study, subject ss, night N. Its PSG
    # and its hypnogram share those six characters (the letters after them name the scorer).
    hypnograms = {
        Path(path).name[:6]: path for path in SLEEP_EDF_SHA256 if path.endswith("-Hypnogram.edf")
    }
    plan = []
    for path in sorted(p for p in SLEEP_EDF_SHA256 if p.endswith("-PSG.edf")):
        name = Path(path).name
        plan.append(
            RecordingSource(
                id=f"sleep_edf/{name.removesuffix('-PSG.edf')}",
                paths=(Path(path), Path(hypnograms[name[:6]])), reader=READ_SLEEP_EDF,
                # Study prefix kept: SC400 and ST700 are different people.
                subject=name[:5], session=f"night{name[5]}",
            )
        )
    return DatasetSpec(
        name="sleep_edf",
        description=(
            "PhysioNet Sleep-EDF Expanded 1.0.0: sleep-cassette (SC, 153 nights of 78 healthy "
            "subjects aged 25-101, at home) and sleep-telemetry (ST, 44 nights of 22 subjects "
            "with mild difficulty falling asleep, in hospital, temazepam or placebo). PSG EDF "
            "with EEG Fpz-Cz and Pz-Oz and horizontal EOG at 100 Hz (slower EMG, respiration and "
            "temperature signals in the cassette study), and a hypnogram EDF of R&K stages per "
            "30 s (W, 1, 2, 3, 4, R, movement, unscored)."
        ),
        task="sleep staging W/N1/N2/N3/REM on 30-s epochs (R&K S3+S4 -> N3), subject-wise splits",
        license="Open Data Commons Attribution License v1.0",
        homepage="https://physionet.org/content/sleep-edfx/1.0.0/",
        citation=(
            "Kemp B, Zwinderman AH, Tuk B, Kamphuisen HAC, Oberyé JJL. Analysis of a sleep-"
            "dependent neuronal feedback loop: the slow-wave microcontinuity of the EEG. IEEE "
            "TBME 47(9):1185-1194, 2000; and Goldberger AL et al., PhysioNet, Circulation "
            "101(23):e215-e220, 2000."
        ),
        mirror_folder="sleep_edf",
        files=files,
        recording_plan=tuple(plan),
        checksum_source=(
            "SHA256SUMS.txt published with the PhysioNet release (all 398 files), as copied to "
            "the shared mirror's sleep_edf/PHYSIONET_SHA256SUMS.txt"
        ),
    )


#: MNE testing-data reader fixtures: relative path -> reader keyword arguments.
_MNE_FORMAT_RECORDINGS: dict[str, dict[str, Any]] = {
    "edf/test_reduced.edf": {},
    "edf/test_utf8_annotations.edf": {},
    "bdf/test_bdf_stim_channel.bdf": {},
    "gdf/test_1ch.gdf": {},
    "brainvision/test_NO.vhdr": {},
    "eeglab/test_raw_chanloc.set": {},
    # Its header says 0 samples, so the sample width must be given.
    "cnt/scan41_short.cnt": {"data_format": "int16"},
    "nihon_kohden/MB0400FU.EEG": {},
    "persyst/sub-pt1_ses-02_task-monitor_acq-ecog_run-01_clip2.lay": {},
    "fif/bv_dig_raw.fif": {},
}


#: The mirror's folder of each format -> its folder in the MNE testing data.
_MNE_TESTING_FOLDERS = {
    "edf": "EDF", "bdf": "BDF", "gdf": "GDF", "brainvision": "BrainVision", "eeglab": "EEGLAB",
    "cnt": "CNT", "nihon_kohden": "NihonKohden", "persyst": "Persyst", "fif": "montage",
}


def _mne_testing_path(path: str) -> str:
    folder, name = path.split("/", 1)
    return f"{_MNE_TESTING_FOLDERS[folder]}/{name}"


def _formats() -> DatasetSpec:
    plan = tuple(
        RecordingSource(
            id=f"formats/{path.rsplit('.', 1)[0]}", paths=(Path(path),), reader=READ_RECORDING,
            reader_kwargs=kwargs,
        )
        for path, kwargs in _MNE_FORMAT_RECORDINGS.items()
    )
    return DatasetSpec(
        name="formats",
        description=(
            "One small real file per reader format from MNE's testing data: EDF+, BDF, GDF, "
            "BrainVision, EEGLAB, Neuroscan CNT, Nihon Kohden, Persyst, FIF (0.4-30 s each), "
            "plus a Sleep-EDF hypnogram (annotations only). No subject ids."
        ),
        task="reader fixtures; a few minutes of varied montages for pretraining",
        license="BSD-3-Clause (MNE testing data)",
        homepage=f"https://github.com/mne-tools/mne-testing-data/tree/{_MNE_TESTING_COMMIT}",
        citation="Gramfort A et al. MEG and EEG data analysis with MNE-Python. Front Neurosci 7:267, 2013.",
        mirror_folder="formats",
        files=tuple(
            RemoteFile(path, _MNE_TESTING_RAW + _mne_testing_path(path), digest)
            for path, digest in MNE_FORMATS_SHA256.items()
        ),
        recording_plan=plan,
        checksum_source=(
            "pinned by git commit; SHA-256 computed from the files at that commit (the source "
            "publishes none)"
        ),
        pretraining_exclusions={
            "formats/edf/test_utf8_annotations": (
                "synthetic test waveforms (square wave, ramp, sines) that the file types as EEG"
            ),
            "formats/gdf/test_1ch": "one ECG channel, no EEG",
            "formats/edf/test_reduced": (
                "BioSemi bank labels A1-I8, whose A1, C3, F7... are not the 10-20 electrodes of "
                "those names, so a vocabulary mapping would misplace them"
            ),
            "formats/persyst/sub-pt1_ses-02_task-monitor_acq-ecog_run-01_clip2": (
                "an ECoG clip (acq-ecog) whose 58 non-scalp 'POL' channels the file types as EEG"
            ),
        },
    )


_CATALOGUE: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        _eegmat(), _dreams_sleep(), _myo_gestures(), _bi2012_p300(), _graz_mi(), _eeglab_sample(),
        _eegbci(), _dreams_spindles(), _sleep_edf(), _formats(),
    )
}


def list_datasets() -> list[str]:
    """Names of every registry dataset, in catalogue order."""
    return list(_CATALOGUE)


def get_dataset(name: str) -> DatasetSpec:
    """The catalogue entry named ``name``; a :class:`DatasetError` lists the known names."""
    try:
        return _CATALOGUE[name]
    except KeyError:
        raise DatasetError(
            f"unknown dataset {name!r}; the registry knows: {', '.join(_CATALOGUE)}"
        ) from None


def _as_spec(dataset: str | DatasetSpec) -> DatasetSpec:
    return dataset if isinstance(dataset, DatasetSpec) else get_dataset(dataset)


# --------------------------------------------------------------------------------------------
# Local availability
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileStatus:
    """What was found locally for one catalogue file.

    ``state``: ``verified`` (matches the published or user-given checksum), ``trusted``
    (matches a checksum recorded on first use), ``unverified`` (present, but no checksum to
    compare with), ``mismatch`` (present, wrong checksum) or ``missing``.
    """

    path: str
    state: FileState
    location: Path | None = None
    expected: str | None = None
    actual: str | None = None

    @property
    def usable(self) -> bool:
        return self.state in _USABLE_STATES


@dataclass(frozen=True)
class Availability:
    """The local state of a dataset: each file's status and the folders that were searched."""

    spec: DatasetSpec
    files: tuple[FileStatus, ...]
    folders: tuple[Path, ...]

    @property
    def usable(self) -> dict[str, Path]:
        """Relative path -> verified local copy, for every usable file."""
        return {s.path: s.location for s in self.files if s.usable and s.location is not None}

    @property
    def status(self) -> Literal["complete", "partial", "absent"]:
        """``complete`` (every file usable), ``partial`` (some) or ``absent`` (none)."""
        usable = sum(s.usable for s in self.files)
        return "complete" if usable == len(self.files) else "partial" if usable else "absent"

    def count(self, state: FileState) -> int:
        return sum(s.state == state for s in self.files)

    def subjects_available(self) -> tuple[int, int]:
        """(subjects whose every recording is usable, subjects in the catalogue)."""
        usable = self.usable
        complete: dict[str, bool] = {}
        for planned in self.spec.recording_plan:
            if planned.subject is None:
                continue
            ok = all(p.as_posix() in usable for p in planned.paths)
            complete[planned.subject] = complete.get(planned.subject, True) and ok
        return sum(complete.values()), len(complete)

    def summary(self) -> str:
        """One line: ``partial: 12 of 36 subjects, 25 of 73 files verified``."""
        have, total = self.subjects_available()
        files = f"{len(self.usable)} of {len(self.files)} files verified"
        subjects = f"{have} of {total} subjects, " if total else ""
        return f"{self.status}: {subjects}{files}"

    def explanation(self) -> str:
        """Why the dataset is not complete locally and what to do; empty when complete."""
        if self.status == "complete":
            return ""
        searched = " nor ".join(str(folder) for folder in self.folders)
        parts = []
        missing = self.count("missing")
        if missing:
            where = f"in neither {searched}" if len(self.folders) > 1 else f"not in {searched}"
            parts.append(f"{missing} file(s) are {where}")
        for state, words in (
            ("mismatch", "fail their checksum (damaged or a different version)"),
            ("unverified", "are present but have no checksum to verify them against"),
        ):
            if self.count(state):
                example = next(s for s in self.files if s.state == state)
                parts.append(f"{self.count(state)} file(s) {words}, e.g. {example.location}")
        archives = self.spec.archives
        sources = archives[0].url if len(archives) == 1 else self.spec.homepage
        return (
            "; ".join(parts)
            + f". `neurofm datasets fetch {self.spec.name}` downloads and verifies them from "
            f"{sources} (checksums: {self.spec.checksum_source})."
        )


def _dataset_folders(
    spec: DatasetSpec, mirror: str | os.PathLike | None, cache: str | os.PathLike | None
) -> tuple[Path, ...]:
    folders = []
    mirror_dir = mirror_root(mirror)
    if mirror_dir is not None:
        folders.append(mirror_dir / spec.mirror_folder)
    cache_folder = cache_root(cache) / spec.mirror_folder
    if cache_folder not in folders:
        folders.append(cache_folder)
    return tuple(folders)


def _trust_record(folder: Path) -> dict[str, str]:
    record = folder / TRUST_RECORD
    return read_sha256sums(record) if record.is_file() else {}


def _judge(
    spec: DatasetSpec,
    remote: RemoteFile,
    folders: tuple[Path, ...],
    records: dict[Path, dict[str, str]],
    checksums: Mapping[str, str],
    hashes: ChecksumCache,
) -> FileStatus:
    found: list[FileStatus] = []
    for folder in folders:
        path = safe_join(folder, remote.path, what=f"{spec.name}/{remote.path}")
        if not path.is_file():
            continue
        actual = hashes.sha256(path)
        expected = remote.sha256 or checksums.get(remote.path)
        state: FileState
        if expected is not None:
            state = "verified" if actual == expected else "mismatch"
        elif remote.path in records[folder]:
            expected = records[folder][remote.path]
            state = "trusted" if actual == expected else "mismatch"
        else:
            state = "unverified"
        status = FileStatus(remote.path, state, path, expected, actual)
        if status.usable:
            return status
        found.append(status)
    # Report the most alarming copy: a mismatch matters more than an unverifiable file.
    found.sort(key=lambda s: s.state != "mismatch")
    return found[0] if found else FileStatus(remote.path, "missing")


def availability(
    dataset: str | DatasetSpec,
    *,
    mirror: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    checksums: Mapping[str, str] | None = None,
) -> Availability:
    """Check which of a dataset's files are present locally and pass their checksums.

    Searches ``<mirror>/<mirror_folder>`` (``mirror`` or ``$NEUROFM_MIRROR``) and then
    ``<cache>/<mirror_folder>`` (``cache`` or ``$NEUROFM_CACHE`` or ``~/.cache/neurofm``);
    never touches the network. ``checksums`` adds user-given expected SHA-256 values by relative
    path, for files whose source publishes none. Hashes are cached by path, size and mtime.
    """
    spec = _as_spec(dataset)
    folders = _dataset_folders(spec, mirror, cache)
    records = {folder: _trust_record(folder) for folder in folders}
    hashes = ChecksumCache(cache_root(cache) / "checksums.json")
    statuses = tuple(
        _judge(spec, remote, folders, records, checksums or {}, hashes) for remote in spec.files
    )
    hashes.save()
    return Availability(spec, statuses, folders)


@dataclass(frozen=True)
class ResolvedDataset:
    """Verified local files of a dataset, ready to become recordings.

    ``paths`` maps catalogue paths to local files that passed their checksum; ``note`` says how
    much of the dataset that is (empty when complete).
    """

    spec: DatasetSpec
    paths: dict[str, Path]
    note: str = ""

    @property
    def complete(self) -> bool:
        return len(self.paths) == len(self.spec.files)

    def sources(self) -> list[RecordingSource]:
        """Loadable sources for every recording whose files were all resolved."""
        return _rebase(self.spec.recording_plan, lambda relative: self.paths.get(relative.as_posix()))


def resolve(
    dataset: str | DatasetSpec,
    require: Literal["complete", "available"] = "complete",
    *,
    mirror: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    checksums: Mapping[str, str] | None = None,
) -> ResolvedDataset:
    """Find a dataset's verified files locally (no network).

    ``require="complete"`` raises :class:`DatasetError` unless every file is present and
    verified; ``require="available"`` returns the verified subset with a note saying what is
    missing, and raises only when nothing is available. A file that fails its checksum always
    raises: a damaged copy is a problem to fix, not data to skip silently.
    """
    spec = _as_spec(dataset)
    state = availability(spec, mirror=mirror, cache=cache, checksums=checksums)
    mismatched = [s for s in state.files if s.state == "mismatch"]
    if mismatched:
        first = mismatched[0]
        raise DatasetError(
            f"{spec.name}: {len(mismatched)} file(s) fail their checksum, e.g. {first.location}: "
            f"expected sha256 {first.expected}, got {first.actual}. The copy is damaged or a "
            f"different version; delete it and run `neurofm datasets fetch {spec.name}` to get a "
            "verified copy (mirror files are never modified by neurofm)."
        )
    if state.status == "complete":
        return ResolvedDataset(spec, state.usable)
    if require == "complete" or state.status == "absent":
        raise DatasetError(
            f"{spec.name} is not available locally ({state.summary()}): {state.explanation()}"
            + (" Or use require='available' to work with the files present." if state.usable else "")
        )
    return ResolvedDataset(spec, state.usable, note=f"{state.summary()}. {state.explanation()}")


# --------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------


def fetch(
    dataset: str | DatasetSpec,
    *,
    mirror: str | os.PathLike | None = None,
    dest: str | os.PathLike | None = None,
    trust_on_first_use: bool = False,
    checksums: Mapping[str, str] | None = None,
    progress: bool = True,
) -> ResolvedDataset:
    """Make a dataset complete locally: use verified mirror files, download and verify the rest.

    Downloads go to ``<dest>/<mirror_folder>`` (``dest`` defaults to the cache folder); archives
    are kept under its ``.archives`` folder until every member is extracted. A file (or archive)
    whose source publishes no checksum is refused unless ``checksums`` gives one (by relative
    path or archive name) or ``trust_on_first_use`` is set, in which case the checksum seen is
    recorded in ``<dataset folder>/TRUSTED_SHA256SUMS`` and every later use is verified against
    it. Returns the complete :class:`ResolvedDataset`.
    """
    spec = _as_spec(dataset)
    user = dict(checksums or {})
    dest_root = cache_root(dest)
    state = availability(spec, mirror=mirror, cache=dest_root, checksums=user)
    todo = [spec.file(s.path) for s in state.files if not s.usable]
    present = {s.path for s in state.files if s.state == "unverified"}
    job = _FetchJob(spec, dest_root / spec.mirror_folder, user, trust_on_first_use, progress,
                    ChecksumCache(dest_root / "checksums.json"))
    job.refuse_unverifiable(todo)
    try:
        for remote in todo:
            job.obtain(remote, present_unverified=remote.path in present)
    finally:
        job.save_records()
    job.remove_unpacked_archives()
    return resolve(spec, "complete", mirror=mirror, cache=dest_root, checksums=user)


@dataclass
class _FetchJob:
    """The state of one :func:`fetch`: where files go, what is trusted, which archives are open."""

    spec: DatasetSpec
    folder: Path
    user: dict[str, str]
    trust_on_first_use: bool
    progress: bool
    hashes: ChecksumCache
    record: dict[str, str] = field(default_factory=dict)
    archives: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.record = _trust_record(self.folder)
        self._recorded_before = dict(self.record)

    def expected(self, remote: RemoteFile) -> str | None:
        return remote.sha256 or self.user.get(remote.path) or self.record.get(remote.path)

    def archive_expected(self, name: str) -> str | None:
        return self.spec.archive(name).sha256 or self.user.get(name) or self.record.get(name)

    def refuse_unverifiable(self, todo: list[RemoteFile]) -> None:
        """Raise before any download if a file could only be trusted on first use, unasked."""
        if self.trust_on_first_use:
            return
        unverifiable = [
            remote.path for remote in todo
            if self.expected(remote) is None
            and (remote.archive is None or self.archive_expected(remote.archive) is None)
        ]
        if unverifiable:
            raise DatasetError(
                f"{self.spec.name}: the source publishes no checksum for {len(unverifiable)} "
                f"file(s) (e.g. {unverifiable[0]}), and neurofm does not use unverified data. "
                "Either pass checksums you trust (--checksums FILE, sha256sum format, paths "
                "relative to the dataset folder or archive names), or pass --trust-on-first-use "
                "to accept what is downloaded now and record its checksums in "
                f"{self.folder / TRUST_RECORD}; every later use is verified against that record. "
                "Nothing was downloaded."
            )

    def obtain(self, remote: RemoteFile, *, present_unverified: bool) -> None:
        """Put one verified copy of ``remote`` at its place in the download folder."""
        label = f"{self.spec.name}/{remote.path}"
        target = safe_join(self.folder, remote.path, what=label)
        expected = self.expected(remote)
        if self.trust_on_first_use and present_unverified and target.is_file() and expected is None:
            # Unpacked by hand (e.g. from a RAR archive) into the download folder.
            self.record[remote.path] = self.hashes.sha256(target)
            return
        if remote.archive is None:
            if remote.url is None:
                raise DatasetError(f"{label}: catalogue entry has neither a URL nor an archive")
            seen = download_file(remote.url, target, expected, label=label, progress=self.progress)
        else:
            archive = self.open_archive(self.spec.archive(remote.archive))
            seen = extract_zip_member(archive, remote.member or remote.path, target, expected, label=label)
        if remote.sha256 is None:
            self.record[remote.path] = seen

    def open_archive(self, archive: RemoteArchive) -> Path:
        """The verified local copy of ``archive`` (downloaded unless placed by hand)."""
        if archive.name in self.archives:
            return self.archives[archive.name]
        label = f"{self.spec.name}/{archive.name}"
        path = safe_join(self.folder, f"{ARCHIVES_FOLDER}/{archive.name}", what=label)
        expected = self.archive_expected(archive.name)
        if path.is_file():
            # Placed by hand (sites that need a login) or left by an interrupted fetch.
            actual = self.hashes.sha256(path)
            if expected is not None and actual != expected:
                raise DatasetError(
                    f"{label}: {path} has sha256 {actual}, expected {expected}; it is damaged or "
                    "a different release. Delete it and fetch again."
                )
        else:
            actual = download_file(archive.url, path, expected, label=label, progress=self.progress)
        if archive.sha256 is None:
            self.record[archive.name] = actual
        if archive.kind != "zip":
            raise DatasetError(
                f"{label}: downloaded and verified to {path}, but it is a .{archive.kind} archive, "
                "which Python's standard library cannot unpack. Unpack it yourself (e.g. `unar` "
                f"or `bsdtar -xf`) into {self.folder}, keeping the file names, then run "
                f"`neurofm datasets fetch {self.spec.name} --trust-on-first-use` to record the "
                "checksums of the extracted files."
            )
        self.archives[archive.name] = path
        return path

    def save_records(self) -> None:
        """Write new trust records and hashes; every entry describes a file completely in place."""
        if self.record != self._recorded_before:
            write_sha256sums(self.folder / TRUST_RECORD, self.record)
        self.hashes.save()

    def remove_unpacked_archives(self) -> None:
        # Every member is now extracted and verified: the archives are only dead weight.
        for path in self.archives.values():
            path.unlink(missing_ok=True)
