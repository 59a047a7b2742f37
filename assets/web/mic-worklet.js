// The microphone's AudioWorklet: mono float input -> 16-bit PCM frames, posted to the page.
//
// It runs in an AudioContext at 16 kHz (the browser resamples the microphone), so
// each frame is ready for the wire: the page prefixes the bridge's 12-byte audio
// header and sends it.  Frames are collected only while capture is on (push-to-talk
// held, or hands-free); each carries its RMS level for the on-screen meter.

class MicCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.frameSamples = options.processorOptions.frameSamples;
    this.capture = false;
    this.reset();
    this.port.onmessage = (event) => {
      if ("capture" in event.data) {
        this.capture = event.data.capture;
        if (!this.capture) this.flush();
      }
    };
  }

  reset() {
    this.frame = new Int16Array(this.frameSamples);
    this.filled = 0;
    this.energy = 0;
  }

  flush() {
    // Send what is collected (a push-to-talk release must not drop its last words).
    if (this.filled > 0) this.post(this.frame.slice(0, this.filled));
    this.reset();
  }

  post(samples) {
    const level = Math.sqrt(this.energy / Math.max(1, samples.length));
    this.port.postMessage({ pcm: samples.buffer, level }, [samples.buffer]);
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel || !this.capture) return true;
    for (let i = 0; i < channel.length; i++) {
      const s = Math.max(-1, Math.min(1, channel[i]));
      this.frame[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      this.energy += s * s;
      if (this.filled === this.frameSamples) {
        this.post(this.frame);
        this.reset();
      }
    }
    return true;
  }
}

registerProcessor("mic-capture", MicCapture);
