// Use a dermaseg planning model from JavaScript with onnxruntime-node.
// npm install --ignore-scripts onnxruntime-node   (the CPU binary ships inside the package)
// node examples/plan_with_onnxruntime_node.mjs model.onnx photo.rgb WIDTH HEIGHT [mm_per_pixel]
// photo.rgb: raw RGB bytes, row by row (decode your JPEG with any image library).
import { readFileSync } from "node:fs";
import ort from "onnxruntime-node";

const [modelPath, rgbPath, width, height, mmPerPixel = "0"] = process.argv.slice(2);
const session = await ort.InferenceSession.create(modelPath);
const pixels = new Uint8Array(readFileSync(rgbPath));
const feeds = {
  image: new ort.Tensor("uint8", pixels, [1, Number(height), Number(width), 3]),
  mm_per_pixel: new ort.Tensor("float32", Float32Array.from([Number(mmPerPixel)]), [1]),
};
const out = await session.run(feeds);
const areaPx = Array.from(out.area_px.data, Number);
const areaMm2 = Array.from(out.area_mm2.data);
let boundaryPixels = 0;
for (const v of out.boundary.data) boundaryPixels += v;
console.log(JSON.stringify({
  size: out.mask.dims.slice(1),
  area_px: areaPx,
  area_mm2: areaMm2,
  boundary_pixels: boundaryPixels,
}));
