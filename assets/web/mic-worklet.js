// The microphone's AudioWorklet: mono float input -> 16-bit PCM frames, posted to the page.
//
// It runs in an AudioContext at 16 kHz (the browser resamples the microphone), so
// each frame is ready for the wire: the page prefixes the bridge's 12-byte audio
// header and sends it.  Every frame is posted with its RMS level; the page decides
// what is sent (push-to-talk held, or hands-free while there is sound) and listens
// for speech while nothing is.  ``{flush, ack}`` posts the partial frame at once and
// answers ``{ack}`` after it, so a push-to-talk release keeps its last words.

class MicCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.frameSamples = options.processorOptions.frameSamples;
    this.reset();
    this.port.onmessage = (event) => {
      if (event.data.flush) {
        this.flush();
        this.port.postMessage({ ack: event.data.ack });
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
    if (!channel) return true;
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
