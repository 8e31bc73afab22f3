// The "How to" tutorial and the field guide, in native <dialog>s: opening one moves focus into it and
// makes the page behind it inert, Escape closes it, and focus goes back to where it was.
import {_} from './i18n.js';

export function openDialog(dialog, returnTo = document.activeElement) {
  if (dialog.open) return;
  dialog.returnTo = returnTo;
  dialog.showModal();
}

// Buttons marked data-close close the dialog; `opener` opens it.
export function setUpDialog(dialog, opener) {
  dialog.addEventListener('click', (e) => {
    if (e.target.closest('[data-close]')) dialog.close();
  });
  dialog.addEventListener('close', () => {
    const back = dialog.returnTo;
    dialog.returnTo = null;
    if (back?.isConnected && !back.closest('[hidden]')) back.focus();
    dialog.onClosed?.();
  });
  opener?.addEventListener('click', () => openDialog(dialog, opener));
}

// The tutorial's steps, one at a time. Returns true when this is the volunteer's first visit to the
// project (remembered on the device once the tutorial is closed, however it was closed).
export function setUpTutorial(dialog, projectId) {
  const steps = [...dialog.querySelectorAll('.step')];
  if (!steps.length) return false;
  const key = `microtasks:tutorial:${projectId}`;
  const back = dialog.querySelector('#step-back');
  const next = dialog.querySelector('#step-next');
  const count = dialog.querySelector('#step-count');
  let at = 0;
  const show = (i) => {
    at = i;
    steps.forEach((step, j) => { step.hidden = j !== i; });
    count.textContent = _('Step %(n)s of %(total)s', {n: i + 1, total: steps.length});
    back.disabled = i === 0;
    next.textContent = i === steps.length - 1 ? next.dataset.last : next.dataset.next;
  };
  back.addEventListener('click', () => show(Math.max(0, at - 1)));
  next.addEventListener('click', () => (at === steps.length - 1 ? dialog.close() : show(at + 1)));
  dialog.onClosed = () => {
    try { localStorage.setItem(key, '1'); } catch { /* storage off: it shows again next time */ }
    show(0);
  };
  show(0);
  try { return !localStorage.getItem(key); } catch { return true; }
}
