"""Live dose: the dose volume, DVH tables and checks follow a seeds node while seeds are dragged, placed or deleted.

The library side of the module's "Live dose" toggle (the module only throttles: a change seen by
:meth:`LiveDosimetry.observe` starts a single-shot timer that calls :meth:`LiveDosimetry.update`).
:class:`LiveDosimetry` computes once as the Compute dose button does (:func:`.dosimetry.compute_dose`: the grid
policy's grid, the same dose volume), then keeps a :class:`SeedBrachyLib.incremental.LiveDose`
on that grid. Each :meth:`~LiveDosimetry.update` reads the seeds back from the node (hand-placed
points take the panel's strength and the default axis), applies the single-seed edits (moved,
added, deleted), rewrites the dose volume and, when an evaluation is asked for, re-runs
:func:`.dosimetry.evaluate_and_check` with the structures read once (:func:`.dosimetry.evaluation_inputs`) and the
LiveDose as the dose source: the DVH of the button's evaluation (the same sample points and rules; the TG-43
formula at each point where the button takes the compiled engine's table, within 0.1 %), with only the changed seed
evaluated at the structures' points. The grid stays while every seed stays inside it (the policy's growth for
distant organs is not re-run on every drag); a seed leaving it starts a full computation on a new policy grid (and
reads the structures again; segments edited while live dose is on are read when it is turned on again).
Turning live off is :meth:`LiveDosimetry.close`.
"""

from __future__ import annotations

from .. import settings, summaries
from ..incremental import LiveDose
from ..progress import report
from . import dosimetry, volumes

#: The module's throttle (ms): an update runs this long after the last seed change (drag events come in bursts).
UPDATE_DELAY_MS = 150
#: Seeds-node events that start a live update: moved, placed, deleted (vtkMRMLMarkupsNode.h).
SEED_EVENTS = ("PointModifiedEvent", "PointAddedEvent", "PointRemovedEvent")


class LiveDosimetry:
    """Dose volume (and optionally DVH tables and checks) kept in step with ``seeds_node``.

    Args:
        ct_node, segmentation_node, target_segment_ids, seeds_node, dose_node, values, oar_segment_ids:
            as :func:`.dosimetry.compute_dose` (dose in Gy, positions mm RAS).
        evaluation: None (dose only), or a dict with ``gtv_segment_id``, ``ctv_segment_id`` and optionally
            ``metrics_table``, ``chart``, ``checks_table``, ``oar_segment_id`` and ``ct_node``: the
            evaluation and checks re-run after each change (:func:`.dosimetry.evaluate_and_check`).
        progress: callback(fraction, message) for the first computation.
    """

    def __init__(self, ct_node, segmentation_node, target_segment_ids, seeds_node, dose_node, values=None,
                 oar_segment_ids=None, evaluation=None, progress=None):
        self.nodes = (ct_node, segmentation_node, list(target_segment_ids), seeds_node, dose_node)
        self.values = values or settings.defaults()
        self.oar_segment_ids = oar_segment_ids
        self.evaluation_options = dict(evaluation) if evaluation is not None else None
        self.evaluation = self.results = None
        self._start(progress)

    def _start(self, progress=None):
        ct, segmentation, targets, seeds_node, dose_node = self.nodes
        _, self.grid = dosimetry.compute_dose(ct, segmentation, targets, seeds_node, dose_node, self.values,
                                              self.oar_segment_ids, progress=progress)
        seeds, self.model = dosimetry.plan_seeds_and_model(seeds_node, self.values)
        self.live = LiveDose(self.grid, seeds, self.model, formalism=self.values.formalism)
        self.inputs = None  # the structures, read at the first evaluation on this grid
        self._evaluate()
        report(progress, 1.0, "live dose ready")

    def _evaluate(self):
        if self.evaluation_options is None:
            return
        options = self.evaluation_options
        if self.inputs is None:
            self.inputs = dosimetry.evaluation_inputs(self.nodes[4], self.nodes[1], options["gtv_segment_id"],
                                                      options["ctv_segment_id"], self.values,
                                                      ct_node=options.get("ct_node"))
        self.evaluation, self.results = dosimetry.evaluate_and_check(
            self.nodes[4], self.nodes[1], values=self.values, inputs=self.inputs, dose_source=self.live, **options)

    def summary(self):
        """The last evaluation's summary (:func:`SeedBrachyLib.summaries.evaluation_summary`); "" for dose only."""
        return "" if self.evaluation is None else summaries.evaluation_summary(self.evaluation, self.results)

    def observe(self, callback):
        """Call ``callback()`` whenever a seed of the seeds node is moved, placed or deleted (the node's
        :data:`SEED_EVENTS`); the caller throttles and then calls :meth:`update`. :meth:`close` stops it."""
        self.close()
        seeds_node = self.nodes[3]
        self._observations = [(seeds_node, seeds_node.AddObserver(getattr(seeds_node, event),
                                                                  lambda caller, event: callback()))
                              for event in SEED_EVENTS]

    def close(self):
        """Stop observing the seeds node (the dose volume and tables stay as they are)."""
        for node, tag in getattr(self, "_observations", ()):
            node.RemoveObserver(tag)
        self._observations = []

    def update(self):
        """Follow the seeds node; returns the number of seeds whose dose was recomputed (0: nothing changed)."""
        seeds, _ = dosimetry.plan_seeds_and_model(self.nodes[3], self.values)
        dosimetry.seeds_inside_ct(seeds, volumes.grid_from_volume_node(self.nodes[0]))
        if not self.grid.contains([s.position for s in seeds]).all():
            self._start()  # a seed left the dose grid: the policy's new grid, full computation
            return len(seeds)
        changed = self.live.sync(seeds)
        if changed:
            dosimetry.write_dose(self.nodes[4], self.live.dose, self.grid, self.live.seeds, self.model, self.values,
                                 self.nodes[3])
            self._evaluate()
        return changed
