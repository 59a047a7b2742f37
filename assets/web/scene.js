// The lesson scene: three.js, inline on a screen or immersive in a headset (WebXR).
//
// It applies the bridge's scene commands (load_scene, highlight, show_label,
// spawn_object, move_object, remove_object) and draws the server's simulations from
// their sim_state.  Labels are HTML over the inline view (crisp, readable by screen
// readers) and sprites in the headset, where no HTML shows; captions get a panel in
// front of the learner there too.  Controllers: the trigger on an object selects it,
// anywhere else (or the grip) is push-to-talk.

import * as THREE from "three";

const PALETTE = [0x4fc3f7, 0xffb74d, 0x81c784, 0xe57373, 0xba68c8, 0xfff176, 0x4db6ac, 0xf06292];
const SCENES = {
  lab: { background: 0x1b2530, floor: 0x283848 },
  space: { background: 0x05070d, floor: 0x111a26 },
  outdoors: { background: 0x6fa8dc, floor: 0x4e7d3a },
  default: { background: 0x141d27, floor: 0x243242 },
};
const HIGHLIGHT = "#ffd23f";

function colorFor(key) {
  let hash = 0;
  for (const char of key) hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
  return PALETTE[hash % PALETTE.length];
}

function geometryFor(kind) {
  const k = kind.toLowerCase();
  if (/sphere|ball|bob|planet|atom|moon|sun/.test(k)) return new THREE.SphereGeometry(0.15, 32, 16);
  if (/cylinder|can|rod|pillar|tube/.test(k)) return new THREE.CylinderGeometry(0.1, 0.1, 0.4, 32);
  if (/cone|pyramid/.test(k)) return new THREE.ConeGeometry(0.15, 0.35, 32);
  if (/plane|table|board|shelf|ramp/.test(k)) return new THREE.BoxGeometry(1.2, 0.05, 0.7);
  if (/torus|ring|donut/.test(k)) return new THREE.TorusGeometry(0.15, 0.05, 16, 48);
  return new THREE.BoxGeometry(0.3, 0.3, 0.3);
}

function dispose(object) {
  object.traverse((child) => {
    child.geometry?.dispose();
    const materials = Array.isArray(child.material) ? child.material : child.material ? [child.material] : [];
    for (const material of materials) {
      material.map?.dispose();
      material.dispose();
    }
  });
}

function textTexture(text, { width = 1024, font = 56, background = "rgba(10,15,22,0.85)", border = HIGHLIGHT } = {}) {
  const canvas = document.createElement("canvas");
  const ctx = canvas.getContext("2d");
  ctx.font = `600 ${font}px system-ui, sans-serif`;
  const words = text.split(/\s+/);
  const lines = [];
  let line = "";
  for (const word of words) {
    const next = line ? `${line} ${word}` : word;
    if (ctx.measureText(next).width > width - 60 && line) {
      lines.push(line);
      line = word;
    } else line = next;
  }
  if (line) lines.push(line);
  const shown = lines.slice(-4);
  canvas.width = width;
  canvas.height = Math.max(1, shown.length) * font * 1.3 + 40;
  ctx.fillStyle = background;
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = border;
  ctx.lineWidth = 8;
  ctx.strokeRect(4, 4, canvas.width - 8, canvas.height - 8);
  ctx.font = `600 ${font}px system-ui, sans-serif`;
  ctx.fillStyle = "#f4f7fa";
  ctx.textBaseline = "top";
  shown.forEach((text, i) => ctx.fillText(text, 30, 20 + i * font * 1.3));
  const texture = new THREE.CanvasTexture(canvas);
  texture.colorSpace = THREE.SRGBColorSpace;
  return { texture, aspect: canvas.width / canvas.height };
}

export class LessonScene {
  constructor({ container, labels, readout, onSelect, onTalk }) {
    this.container = container;
    this.labels = labels;
    this.readout = readout;
    this.onSelect = onSelect;
    this.onTalk = onTalk;

    const renderer = new THREE.WebGLRenderer({ antialias: true, alpha: true });
    renderer.setPixelRatio(Math.min(window.devicePixelRatio, 2));
    renderer.xr.enabled = true;
    container.append(renderer.domElement);
    this.renderer = renderer;

    this.scene = new THREE.Scene();
    this.camera = new THREE.PerspectiveCamera(55, 1, 0.05, 500);
    this.camera.position.set(0, 1.6, 3.2);
    this.camera.lookAt(0, 1.1, 0);
    this.scene.add(this.camera);
    this.scene.add(new THREE.HemisphereLight(0xffffff, 0x334455, 1.4));
    const sun = new THREE.DirectionalLight(0xffffff, 1.6);
    sun.position.set(3, 5, 2);
    this.scene.add(sun);

    this.floor = new THREE.Group();
    const ground = new THREE.Mesh(new THREE.CircleGeometry(6, 64), new THREE.MeshStandardMaterial({ color: SCENES.default.floor }));
    ground.rotation.x = -Math.PI / 2;
    this.floor.add(ground, new THREE.GridHelper(12, 24, 0x557799, 0x2f4154));
    this.floor.children[1].position.y = 0.002;
    this.scene.add(this.floor);
    this.ground = ground;

    this.world = new THREE.Group(); // what scene commands build; cleared by load_scene
    this.scene.add(this.world);
    this.objects = new Map();
    this.tweens = new Map();
    this.anchors = new Map(); // label id -> { target, position, sprite }
    this.sims = new Map();
    this.readouts = new Map();
    this.highlights = new Map();
    this.raycaster = new THREE.Raycaster();
    this.setBackground("default");

    this.captionPanel = new THREE.Mesh(new THREE.PlaneGeometry(1, 0.25), new THREE.MeshBasicMaterial({ transparent: true }));
    this.captionPanel.position.set(0, -0.35, -1.2);
    this.captionPanel.visible = false;
    this.camera.add(this.captionPanel);

    this.setUpPointer();
    this.setUpControllers();
    new ResizeObserver(() => this.resize()).observe(container);
    this.resize();
    renderer.setAnimationLoop((time) => this.frame(time));
  }

  // --- scene commands ---------------------------------------------------------------------------

  apply(message) {
    switch (message.type) {
      case "load_scene":
        return this.load(message.scene, message.options ?? {});
      case "spawn_object":
        return this.spawn(message);
      case "move_object":
        return this.move(message);
      case "remove_object":
        return this.remove(message.object_id);
      case "highlight":
        return this.highlight(message.target, message.on ?? true, message.color);
      case "show_label":
        return this.label(message);
    }
  }

  reset() {
    this.load("default", {});
    for (const simId of [...this.sims.keys()]) this.stopSimulation(simId);
  }

  load(name, options) {
    for (const object of this.objects.values()) {
      this.world.remove(object);
      dispose(object);
    }
    this.objects.clear();
    this.tweens.clear();
    this.highlights.clear();
    for (const id of [...this.anchors.keys()]) this.dropLabel(id);
    this.labels.clear();
    this.sceneName = name;
    this.setBackground(name, options);
  }

  setBackground(name, options = {}) {
    const preset = SCENES[name] ?? SCENES.default;
    const background = typeof options.background === "string" ? options.background : preset.background;
    this.backgroundColor = new THREE.Color(background);
    if (!this.renderer.xr.isPresenting || this.xrMode !== "immersive-ar") this.scene.background = this.backgroundColor;
    this.ground.material.color.set(typeof options.floor === "string" ? options.floor : preset.floor);
  }

  spawn({ object_id: id, kind, position, rotation = [0, 0, 0], scale = 1 }) {
    this.remove(id);
    const mesh = new THREE.Mesh(
      geometryFor(kind),
      new THREE.MeshStandardMaterial({ color: colorFor(kind + id), roughness: 0.45, metalness: 0.1 }),
    );
    mesh.name = id;
    mesh.userData = { id, kind, selectable: true };
    mesh.position.fromArray(position);
    mesh.rotation.set(...rotation.map(THREE.MathUtils.degToRad));
    mesh.scale.setScalar(scale);
    this.world.add(mesh);
    this.objects.set(id, mesh);
    const color = this.highlights.get(id);
    if (color) this.tint(mesh, color);
  }

  move({ object_id: id, position, rotation, duration_s: duration = 0 }) {
    const object = this.find(id);
    if (!object) return;
    const to = new THREE.Vector3().fromArray(position);
    const toRotation = rotation ? new THREE.Euler(...rotation.map(THREE.MathUtils.degToRad)) : null;
    if (!duration) {
      object.position.copy(to);
      if (toRotation) object.rotation.copy(toRotation);
      this.tweens.delete(id);
      return;
    }
    this.tweens.set(id, {
      object,
      from: object.position.clone(),
      to,
      fromRotation: new THREE.Quaternion().setFromEuler(object.rotation),
      toRotation: toRotation ? new THREE.Quaternion().setFromEuler(toRotation) : null,
      start: performance.now(),
      duration: duration * 1000,
    });
  }

  remove(id) {
    const object = this.objects.get(id);
    if (!object) return;
    this.world.remove(object);
    dispose(object);
    this.objects.delete(id);
    this.tweens.delete(id);
  }

  find(id) {
    return this.objects.get(id) ?? this.scene.getObjectByName(id) ?? null;
  }

  highlight(target, on, color) {
    if (on) this.highlights.set(target, color ?? HIGHLIGHT);
    else this.highlights.delete(target);
    const object = this.find(target);
    if (object) this.tint(object, on ? color ?? HIGHLIGHT : null);
  }

  tint(object, color) {
    object.traverse((child) => {
      if (child.material?.emissive) {
        child.material.emissive.set(color ?? 0x000000);
        child.material.emissiveIntensity = color ? 0.7 : 0;
      }
    });
  }

  label({ label_id: id, text, target, position, duration_s: duration }) {
    this.dropLabel(id);
    this.labels.show(id, text, duration);
    if (!text) return;
    const { texture, aspect } = textTexture(text);
    const sprite = new THREE.Sprite(new THREE.SpriteMaterial({ map: texture, depthTest: false }));
    sprite.scale.set(0.18 * aspect, 0.18, 1);
    sprite.visible = false;
    sprite.renderOrder = 10;
    this.scene.add(sprite);
    this.anchors.set(id, { target, position: position ? new THREE.Vector3().fromArray(position) : null, sprite });
    if (duration) setTimeout(() => this.anchors.get(id)?.sprite === sprite && this.dropLabel(id), duration * 1000);
  }

  dropLabel(id) {
    const anchor = this.anchors.get(id);
    if (!anchor) return;
    this.scene.remove(anchor.sprite);
    dispose(anchor.sprite);
    this.anchors.delete(id);
  }

  anchorPoint(anchor, into) {
    if (anchor.target) {
      const object = this.find(anchor.target);
      if (!object) return null;
      object.getWorldPosition(into);
      const box = new THREE.Box3().setFromObject(object);
      into.y = Number.isFinite(box.max.y) ? box.max.y + 0.12 : into.y + 0.25;
      return into;
    }
    return anchor.position ? into.copy(anchor.position) : null;
  }

  // --- simulations ----------------------------------------------------------------------------------

  simulation(message) {
    switch (message.type) {
      case "start_simulation":
        return this.ensureSimulation(message.sim_id, message.model);
      case "stop_simulation":
        return this.stopSimulation(message.sim_id);
      case "sim_state":
        return this.updateSimulation(message);
    }
  }

  ensureSimulation(simId, model) {
    const existing = this.sims.get(simId);
    if (existing?.model === model) return existing;
    if (existing) this.stopSimulation(simId);
    const group = new THREE.Group();
    group.name = simId;
    const sim = { model, group, parts: {} };
    const metal = new THREE.MeshStandardMaterial({ color: 0xb0bec5, metalness: 0.6, roughness: 0.3 });
    if (model === "pendulum") {
      group.position.set(0, 2.2, -0.4);
      const pivot = new THREE.Mesh(new THREE.BoxGeometry(0.3, 0.04, 0.08), metal);
      const rod = new THREE.Mesh(new THREE.CylinderGeometry(0.008, 0.008, 1, 12), metal.clone());
      const bob = new THREE.Mesh(new THREE.SphereGeometry(0.08, 32, 16), new THREE.MeshStandardMaterial({ color: 0xffb74d }));
      bob.name = `${simId}.bob`;
      bob.userData = { id: `${simId}.bob`, selectable: true };
      group.add(pivot, rod, bob);
      Object.assign(sim.parts, { rod, bob });
    } else if (model === "projectile") {
      group.position.set(-1.6, 0.05, -0.4);
      const ball = new THREE.Mesh(new THREE.SphereGeometry(0.06, 24, 12), new THREE.MeshStandardMaterial({ color: 0xe57373 }));
      ball.name = `${simId}.ball`;
      ball.userData = { id: `${simId}.ball`, selectable: true };
      const trail = new THREE.BufferGeometry().setAttribute("position", new THREE.Float32BufferAttribute(new Float32Array(3 * 512), 3));
      trail.setDrawRange(0, 0);
      const line = new THREE.Line(trail, new THREE.LineBasicMaterial({ color: 0xffe082 }));
      group.add(ball, line);
      Object.assign(sim.parts, { ball, trail, points: 0, lastTime: -1 });
    }
    this.scene.add(group);
    this.sims.set(simId, sim);
    for (const [target, color] of this.highlights) if (group.getObjectByName(target)) this.highlight(target, true, color);
    return sim;
  }

  stopSimulation(simId) {
    const sim = this.sims.get(simId);
    if (sim) {
      this.scene.remove(sim.group);
      dispose(sim.group);
      this.sims.delete(simId);
    }
    this.readouts.delete(simId);
    this.showReadout();
  }

  updateSimulation({ sim_id: simId, model, params, state, t }) {
    const sim = this.ensureSimulation(simId, model);
    if (model === "pendulum") {
      const length = params.length ?? 1;
      const fit = Math.min(1, 1.6 / length); // long strings are drawn shorter, to stay in view
      const x = state.x * fit;
      const y = state.y * fit;
      sim.parts.bob.position.set(x, y, 0);
      sim.parts.rod.position.set(x / 2, y / 2, 0);
      sim.parts.rod.scale.y = Math.hypot(x, y);
      sim.parts.rod.rotation.z = state.theta;
      const g = params.gravity ?? 9.81;
      const period = g > 0 ? `, period ${(2 * Math.PI * Math.sqrt(length / g)).toFixed(2)} s` : "";
      this.readouts.set(simId, `Pendulum: length ${length.toFixed(2)} m, angle ${state.theta.toFixed(2)} rad${period}`);
    } else if (model === "projectile") {
      const { speed = 10, angle = Math.PI / 4, gravity = 9.81 } = params;
      const range = gravity > 0 ? (speed * speed * Math.abs(Math.sin(2 * angle))) / gravity : 10;
      const height = gravity > 0 ? (speed * Math.sin(angle)) ** 2 / (2 * gravity) : 5;
      const fit = Math.min(1, 3.2 / Math.max(range, 1e-6), 2 / Math.max(height, 1e-6));
      const parts = sim.parts;
      if (state.flight_time < parts.lastTime) parts.points = 0; // relaunched
      parts.lastTime = state.flight_time;
      parts.ball.position.set(state.x * fit, state.y * fit, 0);
      if (parts.points < 512) {
        parts.trail.attributes.position.setXYZ(parts.points++, state.x * fit, state.y * fit, 0);
        parts.trail.attributes.position.needsUpdate = true;
        parts.trail.setDrawRange(0, parts.points);
      }
      this.readouts.set(simId, `Projectile: ${speed.toFixed(1)} m/s at ${THREE.MathUtils.radToDeg(angle).toFixed(0)}°, x ${state.x.toFixed(2)} m, y ${state.y.toFixed(2)} m${state.landed ? " (landed)" : ""}`);
    } else {
      this.readouts.set(simId, `${model} at t = ${t.toFixed(1)} s`);
    }
    this.showReadout();
  }

  showReadout() {
    const text = [...this.readouts.values()].join(" · ");
    if (this.readout.textContent !== text) this.readout.textContent = text;
  }

  // --- captions in the headset -------------------------------------------------------------------------

  setCaption(text) {
    const material = this.captionPanel.material;
    material.map?.dispose();
    const { texture, aspect } = textTexture(text, { width: 1400, font: 52, border: "#7fd1ff" });
    material.map = texture;
    material.needsUpdate = true;
    this.captionPanel.scale.set(0.25 * aspect, 1, 1);
  }

  // --- input ----------------------------------------------------------------------------------------------

  selectable() {
    const found = [];
    this.scene.traverse((object) => object.userData.selectable && found.push(object));
    return found;
  }

  setUpPointer() {
    const canvas = this.renderer.domElement;
    let down = null;
    canvas.addEventListener("pointerdown", (event) => (down = [event.clientX, event.clientY]));
    canvas.addEventListener("pointerup", (event) => {
      if (!down || Math.hypot(event.clientX - down[0], event.clientY - down[1]) > 6) return;
      const rect = canvas.getBoundingClientRect();
      const pointer = new THREE.Vector2(((event.clientX - rect.left) / rect.width) * 2 - 1, -((event.clientY - rect.top) / rect.height) * 2 + 1);
      this.raycaster.setFromCamera(pointer, this.camera);
      const hit = this.raycaster.intersectObjects(this.selectable(), false)[0];
      if (hit) this.onSelect(hit.object.userData.id);
    });
  }

  setUpControllers() {
    this.talkingWith = null;
    for (let i = 0; i < 2; i++) {
      const controller = this.renderer.xr.getController(i);
      const ray = new THREE.Line(
        new THREE.BufferGeometry().setFromPoints([new THREE.Vector3(0, 0, 0), new THREE.Vector3(0, 0, -1)]),
        new THREE.LineBasicMaterial({ color: 0xffffff }),
      );
      ray.scale.z = 3;
      controller.add(ray);
      controller.addEventListener("selectstart", () => {
        this.raycaster.setFromXRController(controller);
        const hit = this.raycaster.intersectObjects(this.selectable(), false)[0];
        if (hit) this.onSelect(hit.object.userData.id);
        else {
          this.talkingWith = controller;
          this.onTalk(true);
        }
      });
      controller.addEventListener("selectend", () => {
        if (this.talkingWith === controller) {
          this.talkingWith = null;
          this.onTalk(false);
        }
      });
      controller.addEventListener("squeezestart", () => this.onTalk(true));
      controller.addEventListener("squeezeend", () => this.onTalk(false));
      this.scene.add(controller);
    }
  }

  // --- WebXR ------------------------------------------------------------------------------------------------

  async xrModes() {
    if (!navigator.xr) return [];
    const modes = [];
    for (const mode of ["immersive-vr", "immersive-ar"]) {
      try {
        if (await navigator.xr.isSessionSupported(mode)) modes.push(mode);
      } catch {
        /* not allowed here (e.g. not a secure context) */
      }
    }
    return modes;
  }

  async enterXR(mode) {
    const session = await navigator.xr.requestSession(mode, { optionalFeatures: ["local-floor", "hand-tracking"] });
    this.xrMode = mode;
    this.renderer.xr.setReferenceSpaceType("local-floor");
    await this.renderer.xr.setSession(session);
    const ar = mode === "immersive-ar";
    this.scene.background = ar ? null : this.backgroundColor;
    this.floor.visible = !ar;
    this.captionPanel.visible = true;
    session.addEventListener("end", () => {
      this.xrMode = null;
      this.scene.background = this.backgroundColor;
      this.floor.visible = true;
      this.captionPanel.visible = false;
      this.resize();
    });
  }

  // --- drawing ----------------------------------------------------------------------------------------------

  resize() {
    if (this.renderer.xr.isPresenting) return;
    const { clientWidth: width, clientHeight: height } = this.container;
    if (!width || !height) return;
    this.renderer.setSize(width, height, false);
    this.camera.aspect = width / height;
    this.camera.updateProjectionMatrix();
  }

  frame(time) {
    const now = performance.now();
    for (const [id, tween] of this.tweens) {
      const k = Math.min(1, (now - tween.start) / tween.duration);
      const eased = k < 0.5 ? 2 * k * k : 1 - (-2 * k + 2) ** 2 / 2;
      tween.object.position.lerpVectors(tween.from, tween.to, eased);
      if (tween.toRotation) tween.object.quaternion.slerpQuaternions(tween.fromRotation, tween.toRotation, eased);
      if (k >= 1) this.tweens.delete(id);
    }
    this.renderer.render(this.scene, this.camera);
    this.placeLabels();
  }

  placeLabels() {
    const presenting = this.renderer.xr.isPresenting;
    const { clientWidth: width, clientHeight: height } = this.container;
    const point = new THREE.Vector3();
    let unanchored = 0;
    for (const [id, anchor] of this.anchors) {
      const at = this.anchorPoint(anchor, point);
      anchor.sprite.visible = presenting;
      if (presenting) {
        if (at) anchor.sprite.position.copy(at);
        else this.camera.localToWorld(anchor.sprite.position.set(0, 0.3, -1.5));
        continue;
      }
      if (!at) {
        this.labels.place(id, width / 2, 56 + 48 * unanchored++, true);
        continue;
      }
      const ndc = at.clone().project(this.camera);
      const visible = ndc.z < 1 && Math.abs(ndc.x) <= 1.05 && Math.abs(ndc.y) <= 1.05;
      this.labels.place(id, ((ndc.x + 1) / 2) * width, ((1 - ndc.y) / 2) * height, visible);
    }
  }
}
